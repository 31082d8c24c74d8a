// Mounts the root filesystem containerd's snapshotter describes onto the
// bundle's rootfs directory, and unmounts it again.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { containerd } from '../../../proto/gen/containerd/containerd.js';
import { isMountPoint } from '../sandbox/host-mounts.js';

const run = promisify(execFile);

/**
 * Mounts each of containerd's mounts in order onto `target` (overlay or bind, as the snapshotter
 * says). All or nothing: when one fails, the ones before it are unmounted again.
 */
export async function mountRootfs(mounts: containerd.types.IMount[], target: string): Promise<void> {
  for (const m of mounts) {
    const options = (m.options ?? []).join(',');
    const args = ['-t', m.type || 'none', ...(options ? ['-o', options] : []), m.source || 'none', target];
    try {
      await run('mount', args);
    } catch (err) {
      await unmountRootfs(target).catch(() => undefined);
      throw new Error(`cannot mount the rootfs (${m.type} ${m.source}) on ${target}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
    }
  }
}

/** Unmounts everything stacked on `target`; a target that is not mounted is fine. */
export async function unmountRootfs(target: string): Promise<void> {
  for (let i = 0; i < 16 && isMountPoint(target); i++) await run('umount', [target]).catch(() => run('umount', ['-l', target]));
}
