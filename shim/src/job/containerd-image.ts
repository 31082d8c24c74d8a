// A containerd image as a job's root filesystem: mounted read-only from
// containerd's content store and snapshotter with the real `ctr` (a view
// snapshot keyed by the mount target), its config read from the content store.
import { ctr as runCtr, type ContainerdTarget } from './ctr.js';
import { ImageError, type ImageConfig } from './oci-image.js';

/** ctr's output, or an error that says what could not be done and why. */
async function ctr(c: ContainerdTarget, args: string[], what: string): Promise<string> {
  const r = await runCtr(c, ['--connect-timeout', '5s', ...args], 120_000);
  if (!r.ok) throw new Error(`${what}: ${r.stderr}`);
  return r.stdout;
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
