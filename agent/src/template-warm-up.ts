// In a template VM only (kata_ts.template=1), before the agent says it
// listens: one throw-away container goes through the whole agent, the gRPC
// service over a socket of its own, crun and the guest kernel's container
// paths. What that leaves is saved with the template: the JavaScript compiled
// and its inline caches filled, the guest kernel's caches and the cgroup
// parent made, so each clone's first container does not pay for them. No
// host is involved and nothing of it remains but warmed code.
import { mkdir, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import type { NativeAddon } from '../../native/native.js';
import { DEFAULT_PATHS, Sandbox } from './sandbox.js';
import { serveItself } from './warm-up.js';

const ROOT = '/run/kata-ts/warm-up';
const MS_BIND = 4096;
const MS_REC = 16384;
const MNT_DETACH = 2;

/** A container spec as a host sends one: the guest's own root, read-only, running `true`. */
const SPEC = {
  ociVersion: '1.0.2',
  process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['true'], env: ['PATH=/usr/bin:/bin'], cwd: '/' },
  root: { path: 'rootfs', readonly: true },
  hostname: 'warm-up',
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  ],
  linux: { namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }] },
};

export async function warmUpTemplate(native: NativeAddon, log: Logger): Promise<void> {
  const started = performance.now();
  // OpenSSL's generator is made at its first use: made now, every clone holds the same one, and
  // SetupClone's reseed is what tells them apart.
  randomBytes(16);
  const paths = { ...DEFAULT_PATHS, sharedMount: join(ROOT, 'shared'), containersDir: join(ROOT, 'containers'), podTmpfsDir: join(ROOT, 'pod'), crunRoot: join(ROOT, 'crun') };
  const rootfs = join(paths.sharedMount, 'rootfs');
  await mkdir(rootfs, { recursive: true });
  native.mount('/', rootfs, '', MS_BIND | MS_REC, '');
  const sandbox = new Sandbox(paths, native, log);
  const { client, close } = await serveItself(sandbox, native, log, join(ROOT, 'agent.sock'));
  const call = <T>(fn: (cb: (err: Error | null, res: T) => void) => unknown) =>
    new Promise<T>((resolve, reject) => void fn((err, res) => (err ? reject(err) : resolve(res))));
  const md = () => new Metadata();
  try {
    await call((cb) => client.check({}, md(), {}, cb));
    await call((cb) => client.getGuestDetails({}, md(), {}, cb));
    await call((cb) => client.createSandbox({ sandboxId: 'warm-up', hostname: '', sharedFsTag: '', outputFlushMs: 0, debugConsoleEnabled: false }, md(), {}, cb));
    const id = 'warm-up';
    await call((cb) => client.createContainer({ containerId: id, ociSpecJson: JSON.stringify(SPEC), rootfsPath: 'rootfs', podSandbox: false, podNamespaces: [], mountSources: [] }, md(), {}, cb));
    const output = client.readStdout({ containerId: id, execId: '' });
    output.on('data', () => undefined);
    output.on('error', () => undefined);
    await call((cb) => client.startContainer({ containerId: id }, md(), {}, cb));
    await call((cb) => client.waitProcess({ containerId: id, execId: '' }, md(), {}, cb));
    await call((cb) => client.removeContainer({ containerId: id, force: false }, md(), {}, cb));
    log.info('template warmed up', { ms: Math.round(performance.now() - started) });
  } catch (err) {
    // Only a missed saving: the template works as well without it.
    log.warn('template warm-up failed', { error: (err as Error).message });
  } finally {
    close();
    await sandbox.destroy(0).catch(() => undefined);
    try {
      native.umount(rootfs, MNT_DETACH);
    } catch {
      // not mounted
    }
    await rm(ROOT, { recursive: true, force: true });
  }
}
