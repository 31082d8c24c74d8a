// A containerd image as a job's root filesystem: mounted read-only from
// containerd's content store and snapshotter with the real `ctr` (a view
// snapshot keyed by the mount target), its config read from the content store.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ImageError, type ImageConfig } from './oci-image.js';

const run = promisify(execFile);

export interface ContainerdTarget {
  address: string;
  namespace: string;
}

async function ctr(c: ContainerdTarget, args: string[], what: string): Promise<string> {
  try {
    return (await run('ctr', ['-a', c.address, '-n', c.namespace, '--connect-timeout', '5s', ...args], { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${what}: ${e.stderr?.trim() || e.message}`);
  }
}

const PLATFORM = { os: 'linux', architecture: 'amd64' };

/** The image's Env and WorkingDir, from its manifest (or its index's linux/amd64 one) and config in the content store. */
export async function containerdImageConfig(ref: string, c: ContainerdTarget): Promise<ImageConfig> {
  const listing = await ctr(c, ['images', 'ls'], `cannot list the images of containerd at ${c.address}`);
  const row = listing.split('\n').find((l) => l.split(/\s+/)[0] === ref);
  const digest = row?.split(/\s+/)[2];
  if (!digest?.startsWith('sha256:')) throw new ImageError(ref, `is not in containerd at ${c.address} (namespace ${c.namespace}); pull or import it first`);
  const get = async <T>(d: string) => JSON.parse(await ctr(c, ['content', 'get', d], `cannot read ${d} of ${ref}`)) as T;
  let doc = await get<{ manifests?: { digest: string; platform?: { os?: string; architecture?: string } }[]; config?: { digest: string } }>(digest);
  if (doc.manifests) {
    const m = doc.manifests.find((x) => x.platform?.os === PLATFORM.os && x.platform?.architecture === PLATFORM.architecture) ?? doc.manifests[0];
    if (!m) throw new ImageError(ref, 'its index names no manifest');
    doc = await get(m.digest);
  }
  if (!doc.config) throw new ImageError(ref, 'its manifest names no config');
  const cfg = (await get<{ config?: { Env?: string[]; WorkingDir?: string } }>(doc.config.digest)).config ?? {};
  return { env: cfg.Env ?? [], workingDir: cfg.WorkingDir || '/' };
}

/** Mounts the image read-only at target (a folder). */
export async function mountContainerdImage(ref: string, c: ContainerdTarget, target: string): Promise<void> {
  await ctr(c, ['images', 'mount', ref, target], `cannot mount image ${ref}`);
}

/** Unmounts it and removes its snapshot from containerd. */
export async function unmountContainerdImage(c: ContainerdTarget, target: string): Promise<void> {
  await ctr(c, ['images', 'unmount', '--rm', target], `cannot unmount the image at ${target}`);
}
