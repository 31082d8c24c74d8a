// Cleans up after a sandbox whose owner (the shim) is gone: kills its QEMU
// and virtiofsd by their pidfiles, detaches its shared mounts and removes its
// directories. Idempotent; used by the shim's `delete` command.
import { readFile, readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import { loadNative } from '../../../native/native.js';
import { VIRTIOFSD_PIDFILE } from '../hypervisor/vm.js';
import { unmountAndRemove, unshareSource } from './host-mounts.js';
import { sandboxDirs } from './sandbox-dirs.js';

/** expect: one whole argument the process must have (a recycled pid must not be killed). */
async function killFromPidfile(path: string, expect: string, log: Logger): Promise<void> {
  const pid = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
  if (!(pid > 0)) return;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.split('\0').includes(expect)) return;
  try {
    process.kill(pid, 'SIGKILL');
    log.info('killed a leftover sandbox process', { pid, what: expect });
  } catch {
    // already gone
  }
}

/** name: the sandbox's name on this host (Sandbox.start's `name`). */
export async function cleanupDeadSandbox(runRoot: string, name: string, log: Logger): Promise<void> {
  const { vmDir, sharedDir } = sandboxDirs(runRoot, name);
  await killFromPidfile(join(vmDir, 'qemu.pid'), `kata-ts-${name}`, log);
  await killFromPidfile(join(vmDir, VIRTIOFSD_PIDFILE), 'source=' + sharedDir, log);
  const native = loadNative();
  const containers = await readdir(sharedDir).catch(() => [] as string[]);
  for (const c of containers) {
    // The container's bind-mount shares first, then its rootfs.
    const mountsDir = join(sharedDir, c, 'mounts');
    for (const m of await readdir(mountsDir).catch(() => [] as string[]))
      await unshareSource(native, join(mountsDir, m)).catch((err: Error) => log.warn('cannot unmount', { path: `${c}/mounts/${m}`, error: err.message }));
    await rmdir(mountsDir).catch(() => undefined);
    await unmountAndRemove(native, join(sharedDir, c, 'rootfs')).catch((err: Error) => log.warn('cannot unmount', { path: c, error: err.message }));
    await rmdir(join(sharedDir, c)).catch(() => undefined);
  }
  await unmountAndRemove(native, sharedDir).catch(() => undefined);
  await rm(vmDir, { recursive: true, force: true });
}
