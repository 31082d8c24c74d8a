// An OCI image tarball (oci-layout, index.json, blobs/sha256/…, as `ctr image
// export` writes it) made into the layers of a job's root filesystem: each
// layer is unpacked once into a cache keyed by its digest (checked while it is
// read), with OCI whiteouts turned into overlayfs ones, so a second job with
// the same image starts without unpacking.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { basename, dirname, join, normalize } from 'node:path';
import { Transform } from 'node:stream';
import { promisify } from 'node:util';
import * as tar from 'tar';
import type { NativeAddon } from '../../../native/native.js';

const run = promisify(execFile);

export class ImageError extends Error {
  constructor(tarPath: string, message: string) {
    super(`image ${tarPath}: ${message}`);
    this.name = 'ImageError';
  }
}

/** The parts of an image's config a job uses. */
export interface ImageConfig {
  env: string[];
  workingDir: string;
}

export interface UnpackedImage {
  /** Unpacked layer folders, lowest first. */
  layers: string[];
  config: ImageConfig;
  /** Layers this call unpacked (the others came from the cache). */
  unpacked: number;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
}

/** Blobs the size of a manifest or config are read whole; layers are streamed. */
const SMALL_BLOB_BYTES = 1024 * 1024;
const DIGEST = /^sha256:([0-9a-f]{64})$/;
const OPAQUE = '.wh..wh..opq';
const WHITEOUT_PREFIX = '.wh.';

const entryPath = (p: string) => normalize(p).replace(/^(\.\/)+/, '');
const blobPath = (digest: string) => `blobs/sha256/${DIGEST.exec(digest)![1]}`;

function checkDigest(tarPath: string, d: Descriptor, what: string): void {
  if (!DIGEST.test(d?.digest ?? '')) throw new ImageError(tarPath, `${what} has no sha256 digest (${JSON.stringify(d?.digest)})`);
}

/** index.json and every small blob, read in one pass over the tarball. */
async function readSmallFiles(tarPath: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  await tar.t({
    file: tarPath,
    onReadEntry: (entry) => {
      const path = entryPath(entry.path);
      if (entry.type !== 'File' || (entry.size ?? 0) > SMALL_BLOB_BYTES || (path !== 'index.json' && !path.startsWith('blobs/'))) return entry.resume();
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => files.set(path, Buffer.concat(chunks)));
    },
  }).catch((err: Error) => {
    throw new ImageError(tarPath, `cannot read it as a tar file: ${err.message}`);
  });
  return files;
}

function json<T>(tarPath: string, files: Map<string, Buffer>, path: string, what: string): T {
  const bytes = files.get(path);
  if (!bytes) throw new ImageError(tarPath, `has no ${what} (${path}); is it an OCI image tarball (ctr image export)?`);
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw new ImageError(tarPath, `${what} is not JSON: ${(err as Error).message}`);
  }
}

/** The linux/amd64 image's manifest (or the only one), its layers and its config. */
function readManifest(tarPath: string, files: Map<string, Buffer>): { layers: Descriptor[]; config: ImageConfig } {
  let index = json<{ manifests?: (Descriptor & { platform?: { os?: string; architecture?: string } })[] }>(tarPath, files, 'index.json', 'index.json');
  for (let depth = 0; ; depth++) {
    const manifests = index.manifests ?? [];
    if (manifests.length === 0) throw new ImageError(tarPath, 'its index names no manifest');
    const chosen = manifests.find((m) => !m.platform || (m.platform.os === 'linux' && m.platform.architecture === 'amd64')) ?? manifests[0]!;
    checkDigest(tarPath, chosen, 'the manifest');
    const doc = json<{ mediaType?: string; manifests?: unknown[]; layers?: Descriptor[]; config?: Descriptor }>(tarPath, files, blobPath(chosen.digest), `manifest ${chosen.digest}`);
    if (doc.manifests && depth < 2) {
      index = doc as typeof index; // a nested index (multi-platform)
      continue;
    }
    const layers = doc.layers ?? [];
    if (!doc.config) throw new ImageError(tarPath, `manifest ${chosen.digest} names no config`);
    checkDigest(tarPath, doc.config, 'the image config');
    layers.forEach((l, i) => checkDigest(tarPath, l, `layer ${i}`));
    for (const l of layers)
      if (l.mediaType?.includes('zstd')) throw new ImageError(tarPath, `layer ${l.digest} is zstd-compressed; only gzip and uncompressed layers are supported`);
    const cfg = json<{ config?: { Env?: string[]; WorkingDir?: string } }>(tarPath, files, blobPath(doc.config.digest), `config ${doc.config.digest}`).config ?? {};
    return { layers, config: { env: cfg.Env ?? [], workingDir: cfg.WorkingDir || '/' } };
  }
}

/** OCI whiteouts to overlayfs: `.wh.NAME` becomes a 0:0 character device, `.wh..wh..opq` an opaque folder. */
async function convertWhiteouts(root: string, whiteouts: string[], native: NativeAddon): Promise<void> {
  for (const rel of whiteouts) {
    const dir = join(root, dirname(rel));
    const name = basename(rel);
    await mkdir(dir, { recursive: true });
    if (name === OPAQUE) native.setXattr(dir, 'trusted.overlay.opaque', 'y');
    else await run('mknod', [join(dir, name.slice(WHITEOUT_PREFIX.length)), 'c', '0', '0']);
  }
}

/** Unpacks the layers not yet in the cache, each into a temporary folder renamed into place when whole. */
async function unpackMissing(tarPath: string, wanted: Map<string, string>, cacheDir: string, native: NativeAddon): Promise<void> {
  const pending: Promise<void>[] = [];
  const found = new Set<string>();
  await tar.t({
    file: tarPath,
    onReadEntry: (entry) => {
      const digest = [...wanted.keys()].find((d) => blobPath(d) === entryPath(entry.path));
      if (!digest || found.has(digest)) return entry.resume();
      found.add(digest);
      const tmp = join(cacheDir, `tmp-${randomBytes(6).toString('hex')}`);
      const whiteouts: string[] = [];
      const hash = createHash('sha256');
      const hashing = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          hash.update(chunk);
          done(null, chunk);
        },
      });
      pending.push(
        (async () => {
          await mkdir(tmp, { recursive: true });
          const unpack = tar.x({
            cwd: tmp,
            // Whiteouts are not files of the layer: they are turned into overlayfs's own below.
            filter: (path) => {
              const name = basename(path);
              if (!name.startsWith(WHITEOUT_PREFIX)) return true;
              whiteouts.push(entryPath(path));
              return false;
            },
          });
          await new Promise<void>((resolve, reject) => {
            unpack.on('close', resolve);
            unpack.on('error', reject);
            hashing.on('error', reject);
            hashing.pipe(unpack);
          });
          const got = `sha256:${hash.digest('hex')}`;
          if (got !== digest) throw new ImageError(tarPath, `layer ${digest} does not match its digest (read ${got})`);
          await convertWhiteouts(tmp, whiteouts, native);
          // Another job may have put the same layer in place meanwhile: its copy is as good as ours.
          await rename(tmp, wanted.get(digest)!).catch(async (err: NodeJS.ErrnoException) => {
            if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
            await rm(tmp, { recursive: true, force: true });
          });
        })().catch(async (err: Error) => {
          await rm(tmp, { recursive: true, force: true });
          throw err instanceof ImageError ? err : new ImageError(tarPath, `layer ${digest} cannot be unpacked: ${err.message}`);
        }),
      );
      entry.pipe(hashing);
    },
  });
  await Promise.all(pending);
  for (const d of wanted.keys()) if (!found.has(d)) throw new ImageError(tarPath, `layer ${d} is not in the tarball`);
}

export async function unpackImage(tarPath: string, cacheDir: string, native: NativeAddon): Promise<UnpackedImage> {
  if (!(await stat(tarPath).catch(() => undefined))?.isFile()) throw new ImageError(tarPath, 'is not a file');
  const { layers, config } = readManifest(tarPath, await readSmallFiles(tarPath));
  await mkdir(cacheDir, { recursive: true, mode: 0o700 });
  const folders = layers.map((l) => join(cacheDir, DIGEST.exec(l.digest)![1]!));
  const missing = new Map<string, string>();
  for (const [i, l] of layers.entries()) if (!(await stat(folders[i]!).catch(() => undefined))) missing.set(l.digest, folders[i]!);
  if (missing.size > 0) await unpackMissing(tarPath, missing, cacheDir, native);
  return { layers: folders, config, unpacked: missing.size };
}
