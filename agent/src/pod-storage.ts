// Where a container's bind mounts take their sources from in the guest: a
// path the host shared into the virtio-fs share, or a tmpfs of the pod (its
// /dev/shm, memory-backed volumes) that its containers share. Each source is
// checked here, so a mount never reaches outside what it was given.
import { mkdir, realpath } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Logger } from '../../common/log.js';
import type { NativeAddon } from '../../native/native.js';
import type { MountSource } from '../../proto/gen/agent.js';
import { invalidArgument } from './errors.js';
import { isBindMount } from './guest-spec.js';
import type { OciMount } from './oci-spec.js';

const MS_NOSUID = 2;
const MS_NODEV = 4;
const MNT_DETACH = 2;
const TMPFS_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;

const within = (dir: string, path: string) => path === dir || path.startsWith(`${dir}/`);

export class PodStorage {
  /** Pod tmpfs mounts by name: their guest path and size. */
  readonly #tmpfs = new Map<string, { path: string; sizeBytes: number }>();

  constructor(
    private readonly sharedMount: string,
    private readonly tmpfsDir: string,
    private readonly native: NativeAddon,
    private readonly log: Logger,
  ) {}

  /** The guest source of each bind mount the host gave one for, by mount index. */
  async resolve(mounts: readonly OciMount[], sources: readonly MountSource[]): Promise<Map<number, string>> {
    const resolved = new Map<number, string>();
    for (const { index, source } of sources) {
      const mount = mounts[index];
      if (!mount || !isBindMount(mount)) throw invalidArgument(`mount source ${index}: the spec has no bind mount at that index`);
      if (resolved.has(index)) throw invalidArgument(`mount ${mount.destination}: given two sources`);
      if (!source) throw invalidArgument(`mount ${mount.destination}: the mount source names neither a shared path nor a pod tmpfs`);
      resolved.set(index, source.$case === 'sharedPath' ? await this.#shared(mount, source.value) : await this.#podTmpfs(mount, source.value.name, source.value.sizeBytes));
    }
    return resolved;
  }

  async #shared(mount: OciMount, relative: string): Promise<string> {
    const normalized = posix.normalize(relative);
    if (!relative || posix.isAbsolute(normalized) || normalized === '..' || normalized.startsWith('../'))
      throw invalidArgument(`mount ${mount.destination}: shared path ${JSON.stringify(relative)} must be relative and inside the shared filesystem`);
    let real: string;
    try {
      real = await realpath(join(this.sharedMount, normalized));
    } catch {
      throw invalidArgument(`mount ${mount.destination}: its source (${mount.source ?? '-'}) is not in the shared filesystem`);
    }
    // A symlink in the share must not lead the mount to a guest path outside it.
    if (!within(this.sharedMount, real)) throw invalidArgument(`mount ${mount.destination}: its source leads outside the shared filesystem (to ${real})`);
    return real;
  }

  async #podTmpfs(mount: OciMount, name: string, sizeBytes: number): Promise<string> {
    if (!TMPFS_NAME.test(name)) throw invalidArgument(`mount ${mount.destination}: pod tmpfs name ${JSON.stringify(name)} is not valid`);
    const existing = this.#tmpfs.get(name);
    if (existing) return existing.path;
    const path = join(this.tmpfsDir, name);
    await mkdir(path, { recursive: true });
    const size = sizeBytes > 0 ? `,size=${sizeBytes}` : '';
    this.native.mount('tmpfs', path, 'tmpfs', MS_NOSUID | MS_NODEV, `mode=1777${size}`);
    this.#tmpfs.set(name, { path, sizeBytes });
    this.log.info('pod tmpfs mounted', { name, path, sizeBytes });
    return path;
  }

  /** Unmounts every pod tmpfs (the sandbox is going away). */
  release(): void {
    for (const { path } of this.#tmpfs.values()) {
      try {
        this.native.umount(path, MNT_DETACH);
      } catch {
        // already gone
      }
    }
    this.#tmpfs.clear();
  }
}
