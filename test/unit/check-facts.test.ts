// What kata-ts check reads off a host: the parsers of /proc/cpuinfo, QEMU's
// help and version lines, and the guest images' build records.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkoutOf, containerdVersion, cpuVirtFlags, parseDeviceHelp, parseObjectHelp, shimSearchPath, templateFacts, versionAfterWord } from '../../shim/src/check/host-facts.js';
import { ImageRecordError, inspectImage, inspectRootfs, kernelReleaseOf, parseImageRecord } from '../../shim/src/check/image-record.js';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

describe('host fact parsers', () => {
  it('takes the virtualisation flags of the first CPU', () => {
    expect(cpuVirtFlags('processor\t: 0\nflags\t\t: fpu vme vmx sse hypervisor lm\n\nprocessor\t: 1\nflags\t\t: svm\n')).toEqual(['vmx', 'hypervisor']);
    expect(cpuVirtFlags('')).toEqual([]);
  });

  it('lists QEMU device and object types', () => {
    const devices = 'Storage devices:\nname "nvdimm", desc "DIMM memory module"\nname "virtio-net-pci", bus PCI, alias "virtio-net"\n';
    expect(parseDeviceHelp(devices)).toEqual(['nvdimm', 'virtio-net-pci']);
    expect(parseObjectHelp('List of user creatable objects:\n  memory-backend-file\n  rng-random\n')).toEqual(['memory-backend-file', 'rng-random']);
  });

  it('reads version lines', () => {
    expect(versionAfterWord('QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022')).toBe('7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)');
    expect(versionAfterWord('slirp4netns version 1.2.0\ncommit: 656041d')).toBe('1.2.0');
    expect(containerdVersion('containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n')).toBe('1.6.20~ds1');
  });

  it('looks for the shim on PATH, systemd’s default PATH and containerd’s folder, each once', () => {
    expect(shimSearchPath('/root/bin:/usr/bin', '/opt/containerd/bin')).toEqual([
      '/root/bin',
      '/usr/bin',
      '/usr/local/sbin',
      '/usr/local/bin',
      '/usr/sbin',
      '/sbin',
      '/bin',
      '/opt/containerd/bin',
    ]);
  });

  it('knows a checkout’s build/ folder from an installed runtime folder', () => {
    expect(checkoutOf(join(import.meta.dirname, '../../build'))).toBe(join(import.meta.dirname, '../..'));
    expect(checkoutOf('/opt/kata-ts')).toBeUndefined();
  });
});

describe('build records', () => {
  it('parse the key, the digest, the fields and the inputs', () => {
    const r = parseImageRecord('x.key', `key=abc\nsha256=${'b'.repeat(64)}\ncrun=crun version 1.8.1\ninput=${'c'.repeat(64)} build/crun\n`);
    expect(r).toEqual({ key: 'abc', sha256: 'b'.repeat(64), fields: { key: 'abc', sha256: 'b'.repeat(64), crun: 'crun version 1.8.1' }, inputs: [{ sha256: 'c'.repeat(64), path: 'build/crun' }] });
    expect(() => parseImageRecord('x.key', 'key=abc\n')).toThrow(ImageRecordError);
  });

  it('give the kernel release from its .config', () => {
    expect(kernelReleaseOf('#\n# Linux/x86 6.1.192 Kernel Configuration\n#\nCONFIG_LOCALVERSION="-kata-ts"\n')).toBe('6.1.192-kata-ts');
    expect(kernelReleaseOf('# Linux/x86 6.1.192 Kernel Configuration\n')).toBe('6.1.192');
    expect(kernelReleaseOf('')).toBeUndefined();
  });
});

describe('inspecting an image', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kata-ts-check-'));
    mkdirSync(join(dir, 'build'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const image = () => join(dir, 'build/rootfs.img');
  const write = (rel: string, text: string) => writeFileSync(join(dir, rel), text);

  it('reports a missing image, and one without a record', async () => {
    expect(await inspectImage(image(), true)).toEqual({ path: image(), error: 'missing' });
    write('build/rootfs.img', 'img');
    expect(await inspectImage(image(), true)).toEqual({ path: image(), size: 3 });
  });

  it('compares the image with its record and, in a checkout, the inputs with theirs', async () => {
    write('build/rootfs.img', 'img');
    write('build/agent.cjs', 'agent v1');
    write('build/crun', 'crun');
    write('build/rootfs.img.key', `key=k\nsha256=${sha('img')}\ninput=${sha('agent v1')} build/agent.cjs\ninput=${sha('crun')} build/crun\ninput=${sha('x')} build/gone\n`);
    const fresh = await inspectRootfs(image(), dir, true);
    expect(fresh).toMatchObject({ digestMatches: true, current: { changed: [], missing: ['build/gone'] } });
    write('build/agent.cjs', 'agent v2');
    write('build/rootfs.img', 'IMG');
    expect(await inspectRootfs(image(), dir, true)).toMatchObject({ digestMatches: false, current: { changed: ['build/agent.cjs'] } });
    // Outside a checkout, and without verifying, only the record is read.
    const quick = await inspectRootfs(image(), undefined, false);
    expect(quick.record?.key).toBe('k');
    expect(quick.digestMatches).toBeUndefined();
    expect(quick.current).toBeUndefined();
  });

  it('says when a record cannot be used', async () => {
    write('build/rootfs.img', 'img');
    write('build/rootfs.img.key', 'nonsense\n');
    expect((await inspectImage(image(), true)).recordError).toMatch(/rootfs.img.key: no key= and sha256= lines/);
  });
});

describe('template facts', () => {
  it('count the templates and their blocks, and find the folder that decides whether one can be written', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-tfacts-'));
    try {
      expect(templateFacts(true, join(dir, 'not', 'yet'))).toEqual({ enabled: true, path: join(dir, 'not', 'yet'), count: 0, bytes: 0 });
      mkdirSync(join(dir, '0123456789abcdef'));
      writeFileSync(join(dir, '0123456789abcdef', 'state'), Buffer.alloc(8192, 1));
      mkdirSync(join(dir, '.0123456789abcdef.1.partial'));
      const facts = templateFacts(false, dir);
      expect(facts).toMatchObject({ enabled: false, count: 1 });
      expect(facts.bytes).toBeGreaterThanOrEqual(8192);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
