// Host bind mounts that put container root filesystems and bind-mount sources
// into a sandbox's virtio-fs share. Removal never deletes through a mount.
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { readFileSync, realpathSync, statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { NativeAddon } from '../../../native/native.js';
import type { SourceFacts } from './pod-placement.js';

const MS_BIND = 0x1000;
const MS_REC = 0x4000;
const MS_RDONLY = 1;
const MS_REMOUNT = 32;
const MS_PRIVATE = 1 << 18;
const MS_SHARED = 1 << 20;
const MNT_DETACH = 2;

/** The filesystem type mounted at path, if path is a mount point. */
function mountTypeAt(path: string): string | undefined {
  let type: string | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ');
    // The type follows the " - " separator; the last mount at a path is the one seen.
    if (fields[4] === path) type = fields[fields.indexOf('-') + 1];
  }
  return type;
}

export function isMountPoint(path: string): boolean {
  return mountTypeAt(path) !== undefined;
}

/** What a bind source is on the host; undefined when it does not exist. */
export function inspectSource(source: string): SourceFacts | undefined {
  let realPath: string;
  try {
    realPath = realpathSync(source);
  } catch {
    return undefined;
  }
  const isDirectory = statSync(realPath).isDirectory();
  if (mountTypeAt(realPath) !== 'tmpfs') return { realPath, isDirectory };
  const fs = statfsSync(realPath);
  return { realPath, isDirectory, tmpfsSizeBytes: fs.blocks * fs.bsize };
}

/**
 * Binds a host path (a folder or a single file) at target inside a share, read-only on the host
 * side too when asked: the guest then cannot write through virtio-fs whatever it mounts.
 */
export async function shareSource(native: NativeAddon, source: string, target: string, o: { isDirectory: boolean; readonly: boolean; recursive: boolean }): Promise<void> {
  if (o.isDirectory) await mkdir(target, { recursive: true });
  else {
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, '', { flag: 'a' });
  }
  native.mount(source, target, '', MS_BIND | (o.recursive ? MS_REC : 0), '');
  if (o.readonly) {
    try {
      native.mount('', target, '', MS_BIND | MS_REMOUNT | MS_RDONLY, '');
    } catch (err) {
      native.umount(target, MNT_DETACH);
      throw err;
    }
  }
}

/** Detaches whatever is mounted at target and removes the folder or file that held it. */
export async function unshareSource(native: NativeAddon, target: string): Promise<void> {
  for (let i = 0; i < 16 && isMountPoint(target); i++) native.umount(target, MNT_DETACH);
  if (isMountPoint(target)) throw new Error(`${target} is still a mount point after unmounting`);
  await rm(target, { recursive: false, force: true }).catch(() => rmdir(target));
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
