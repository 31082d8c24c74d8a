// `containerd-shim-kata-ts-v2 … start`: prints the address of the shim that
// serves this task. A container of an existing pod gets its sandbox's shim's
// address. Anything else gets a new shim, and that shim is this very process:
// once it listens it prints its address, lets go of the stdout and stderr
// containerd waits on, and keeps serving. The installed wrapper script runs
// it in its own session and exits with the address, so containerd's `start`
// returns after a single Node start-up (Go shims re-exec themselves instead,
// which costs them little and would cost us a second start-up).
import { existsSync, writeSync } from 'node:fs';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { ensureSocketRoot, socketPath, toAddress } from './address.js';
import { containerKind, sandboxIdOf } from './annotations.js';
import { writeBundleFile } from './bundle-state.js';
import type { ShimFlags } from './flags.js';
import type { OciSpecLike } from './task-service.js';

export function connectable(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function writeAddressFile(bundle: string, address: string): Promise<void> {
  // containerd reads this file on restart and does not trim it: no newline.
  await writeBundleFile(bundle, 'address', address);
}

/** Resolves once the address was printed; when this process became the shim, it keeps running after that. */
export async function startCommand(flags: ShimFlags): Promise<void> {
  const bundle = process.cwd();
  const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as OciSpecLike;
  const group = sandboxIdOf(flags.id, spec.annotations);
  const path = socketPath(flags.address, flags.namespace, group);
  const address = toAddress(path);

  if (containerKind(spec.annotations) === 'pod-container' || (existsSync(path) && (await connectable(path)))) {
    await writeAddressFile(bundle, address);
    process.stdout.write(address);
    return;
  }
  if (existsSync(path)) await unlink(path);
  await ensureSocketRoot();

  await raiseOomScoreAboveContainerd();
  const [{ serveCommand }, { loadNative }] = await Promise.all([import('./serve.js'), import('../../../native/native.js')]);
  await serveCommand(flags, spec, path, async () => {
    // Before the address goes out: containerd must not be told of a shim that then fails.
    const native = loadNative();
    await writeAddressFile(bundle, address);
    // stdout is the address and nothing else: containerd reads all of it, and waits for EOF.
    writeSyncAll(1, address);
    native.detachStdio();
  });
}

/**
 * As containerd's own shims do: one point above containerd's OOM score (which this process
 * inherited), so under memory pressure the kernel kills a sandbox before containerd. QEMU and
 * virtiofsd inherit it. Best effort: the score stays as it is where the kernel refuses.
 */
async function raiseOomScoreAboveContainerd(): Promise<void> {
  const file = '/proc/self/oom_score_adj';
  const inherited = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10);
  if (Number.isNaN(inherited)) return;
  await writeFile(file, String(Math.min(1000, inherited + 1))).catch(() => undefined);
}

function writeSyncAll(fd: number, text: string): void {
  const bytes = Buffer.from(text);
  for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off);
}
