// OCI image tarballs unpacked into the layer cache for real (root: overlayfs
// whiteouts are character devices and trusted.* attributes).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadNative } from '../../native/native.js';
import { unpackImage } from '../../shim/src/job/oci-image.js';
import { BUSYBOX_IMAGE_TAR } from '../helpers/containerd.js';

let dir: string;
beforeEach(() => void (dir = mkdtempSync(join(tmpdir(), 'kata-ts-oci-'))));
afterEach(() => {
  execFileSync('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/self/mountinfo | xargs -r -n1 umount || true`]);
  rmSync(dir, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** An OCI image tarball whose layers are the given folders' contents (gzip), lowest first. */
async function imageTar(layers: Record<string, string>[], opts: { corrupt?: boolean } = {}): Promise<string> {
  const root = join(dir, 'image');
  mkdirSync(join(root, 'blobs/sha256'), { recursive: true });
  const blob = (b: Buffer) => {
    writeFileSync(join(root, 'blobs/sha256', sha(b)), b);
    return { digest: `sha256:${sha(b)}`, size: b.length };
  };
  const descriptors = [];
  for (const [i, files] of layers.entries()) {
    const src = join(dir, `layer-src-${i}`);
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(src, path, '..'), { recursive: true });
      writeFileSync(join(src, path), content);
    }
    const out = join(dir, `layer-${i}.tgz`);
    await tar.c({ gzip: true, file: out, cwd: src, portable: true }, readdirSync(src));
    const bytes = readFileSync(out);
    const d = blob(bytes);
    if (opts.corrupt) writeFileSync(join(root, 'blobs/sha256', sha(bytes)), Buffer.concat([bytes.subarray(0, -8), Buffer.alloc(8)]));
    descriptors.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...d });
  }
  const config = blob(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin', 'FROM_IMAGE=1'], WorkingDir: '/src' } })));
  const manifest = blob(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers: descriptors })));
  writeFileSync(join(root, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest }] }));
  writeFileSync(join(root, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const file = join(dir, 'image.tar');
  await tar.c({ file, cwd: root }, ['oci-layout', 'index.json', 'blobs']);
  return file;
}

describe('unpackImage', () => {
  it('unpacks the busybox image once, and takes it from the cache the second time', async () => {
    const cache = join(dir, 'cache');
    const first = await unpackImage(BUSYBOX_IMAGE_TAR, cache, loadNative());
    expect(first.unpacked).toBe(first.layers.length);
    expect(existsSync(join(first.layers.at(-1)!, 'bin/busybox'))).toBe(true);
    const second = await unpackImage(BUSYBOX_IMAGE_TAR, cache, loadNative());
    expect(second).toEqual({ ...first, unpacked: 0 });
    expect(readdirSync(cache).filter((n) => n.startsWith('tmp-'))).toEqual([]);
  });

  it('turns OCI whiteouts into overlayfs ones, so an overlay of the layers shows what the image means', async () => {
    const file = await imageTar([
      { 'a/gone': 'deleted above\n', 'a/kept': 'kept\n', 'd/old': 'hidden by an opaque folder\n' },
      { 'a/.wh.gone': '', 'd/.wh..wh..opq': '', 'd/new': 'new\n' },
    ]);
    const image = await unpackImage(file, join(dir, 'cache'), loadNative());
    expect(image.config).toEqual({ env: ['PATH=/bin', 'FROM_IMAGE=1'], workingDir: '/src' });
    expect(statSync(join(image.layers[1]!, 'a/gone')).isCharacterDevice()).toBe(true);
    const merged = join(dir, 'merged');
    mkdirSync(merged);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${[...image.layers].reverse().join(':')}`, merged]);
    expect(readdirSync(join(merged, 'a'))).toEqual(['kept']);
    expect(readdirSync(join(merged, 'd'))).toEqual(['new']);
  });

  it('refuses a layer that does not match its digest, keeping nothing of it', async () => {
    const file = await imageTar([{ 'f': 'x\n' }], { corrupt: true });
    const cache = join(dir, 'cache');
    await expect(unpackImage(file, cache, loadNative())).rejects.toThrow(/layer sha256:[0-9a-f]{64} (does not match its digest|cannot be unpacked)/);
    expect(readdirSync(cache)).toEqual([]);
  });

  it('says what is wrong with a file that is no OCI image', async () => {
    const notTar = join(dir, 'x.tar');
    writeFileSync(notTar, 'not a tarball');
    await expect(unpackImage(notTar, join(dir, 'cache'), loadNative())).rejects.toThrow(/has no index.json|cannot read it as a tar file/);
    await expect(unpackImage(join(dir, 'missing.tar'), join(dir, 'cache'), loadNative())).rejects.toThrow('is not a file');
  });
});
