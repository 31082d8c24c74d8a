// Mounts the root filesystem containerd's snapshotter describes onto the
// bundle's rootfs directory, and unmounts it again.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { containerd } from '../../../proto/gen/containerd/containerd.js';

const run = promisify(execFile);

export function isMounted(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === path);
}

/** Mounts each of containerd's mounts in order onto `target` (overlay or bind, as the snapshotter says). */
export async function mountRootfs(mounts: containerd.types.IMount[], target: string): Promise<void> {
  for (const m of mounts) {
    const options = (m.options ?? []).join(',');
    const args = ['-t', m.type || 'none', ...(options ? ['-o', options] : []), m.source || 'none', target];
    try {
      await run('mount', args);
    } catch (err) {
      throw new Error(`cannot mount the rootfs (${m.type} ${m.source}) on ${target}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
    }
  }
}

/** Unmounts everything stacked on `target`; a target that is not mounted is fine. */
export async function unmountRootfs(target: string): Promise<void> {
  for (let i = 0; i < 16 && isMounted(target); i++) await run('umount', [target]).catch(() => run('umount', ['-l', target]));
}
