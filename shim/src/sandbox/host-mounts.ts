// Host bind mounts that put container root filesystems into a sandbox's
// virtio-fs share. Removal never deletes through a mount.
import { mkdir, rmdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import type { NativeAddon } from '../../../native/native.js';

const MS_BIND = 0x1000;
const MS_REC = 0x4000;
const MS_PRIVATE = 1 << 18;
const MS_SHARED = 1 << 20;
const MNT_DETACH = 2;

export function isMountPoint(path: string): boolean {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  return mounts.split('\n').some((line) => line.split(' ')[4] === path);
}

/**
 * Makes `dir` a mount point with shared propagation, so mounts made below it
 * later also appear inside virtiofsd's own mount namespace.
 */
export async function makeSharedMountPoint(native: NativeAddon, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  native.mount(dir, dir, '', MS_BIND, '');
  native.mount('', dir, '', MS_PRIVATE, '');
  native.mount('', dir, '', MS_SHARED, '');
}

export async function bindMount(native: NativeAddon, source: string, target: string): Promise<void> {
  await mkdir(target, { recursive: true });
  native.mount(source, target, '', MS_BIND | MS_REC, '');
}

/** Detaches the mount at `target` (if any) and removes the now empty directory. */
export async function unmountAndRemove(native: NativeAddon, target: string): Promise<void> {
  if (isMountPoint(target)) native.umount(target, MNT_DETACH);
  if (isMountPoint(target)) throw new Error(`${target} is still a mount point after unmounting`);
  await rmdir(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}
