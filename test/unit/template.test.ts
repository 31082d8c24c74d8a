// Sandbox templates without a VM: what keys them, how a template VM and a
// clone differ on QEMU's command line (and only there), the QMP commands that
// add a clone's late devices, and the store's guarantees: a damaged template
// is never used, a half-made one is never seen, two makers never race.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { lateDeviceCommands, renderQemuArgs } from '../../shim/src/hypervisor/qemu-args.js';
import { DEFAULT_SETTINGS } from '../../shim/src/sandbox/settings.js';
import { planVm } from '../../shim/src/sandbox/vm-plan.js';
import { cloneDescription, templateVmDescription } from '../../shim/src/template/sandbox-template.js';
import { templateInputs, templateKey, templateShape } from '../../shim/src/template/template-key.js';
import { TEMPLATE_RECORD, TemplateStore, type TemplateRecord } from '../../shim/src/template/template-store.js';

const lines: string[] = [];
const log = createLogger({ level: 'info', write: (line) => void lines.push(line) });
const settings = { ...DEFAULT_SETTINGS, kernelPath: '/k/vmlinux', imagePath: '/i/rootfs.img', runRoot: '/r' };
const plan = (name: string, extra: Partial<Parameters<typeof planVm>[0]> = {}) =>
  planVm({ name, settings, accel: 'tcg', channel: 'serial', guestCid: 9, imageSizeBytes: 64 << 20, network: { kind: 'own-namespace', tap: 'tap0_kt', mac: '02:00:00:00:00:01', vhost: false }, ...extra });

describe('a template VM and its clone', () => {
  it('have the same devices at the same places; the clone gets its share and NIC over QMP', () => {
    const cold = plan('a@default');
    const template = renderQemuArgs(templateVmDescription(cold, 'k', '/r/template/k.1', '/cache/k'));
    const clone = renderQemuArgs(cloneDescription(cold, 0));
    const devices = (argv: string[]) => argv.flatMap((a, i) => (argv[i - 1] === '-device' ? [a.replace(/chardev=\w+,?/, '')] : []));
    expect(devices(clone)).toEqual(devices(template));
    expect(devices(clone).filter((d) => d.startsWith('pcie-root-port'))).toHaveLength(5);
    expect(devices(clone).some((d) => d.startsWith('vhost-user-fs') || d.startsWith('virtio-net'))).toBe(false);
    expect(template.join(' ')).toContain('memory-backend-file,id=ram0,size=256M,share=on,mem-path=/cache/k/ram');
    expect(clone.join(' ')).toContain('memory-backend-file,id=ram0,size=256M,share=on,mem-path=/proc/self/fd/3');
    expect(clone.slice(clone.indexOf('-incoming'), clone.indexOf('-incoming') + 2)).toEqual(['-incoming', 'defer']);
    expect(template).not.toContain('-incoming');
    expect(lateDeviceCommands(cloneDescription(cold, 0))).toEqual([
      { execute: 'chardev-add', arguments: { id: 'virtiofs0', backend: { type: 'socket', data: { addr: { type: 'unix', data: { path: '/r/vm/a@default/virtiofsd.sock' } }, server: false } } } },
      { execute: 'device_add', arguments: { driver: 'vhost-user-fs-pci', id: 'fs0', bus: 'rp0', chardev: 'virtiofs0', tag: 'kataShared', 'queue-size': 1024 } },
      { execute: 'netdev_add', arguments: { type: 'tap', id: 'net0', ifname: 'tap0_kt', script: 'no', downscript: 'no', vnet_hdr: true, vhost: false } },
      { execute: 'device_add', arguments: { driver: 'virtio-net-pci', id: 'nic0', bus: 'rp1', netdev: 'net0', mac: '02:00:00:00:00:01', romfile: '' } },
    ]);
  });

  it('passes CNI taps first, then the RAM and the state', () => {
    const cold = plan('p@k8s.io', { network: { kind: 'passed-taps', taps: [{ name: 't0', mac: '0a:00:00:00:00:01', mtu: 1450 }, { name: 't1', mac: '0a:00:00:00:00:02', mtu: 1500 }], vhost: true } });
    const clone = cloneDescription(cold, 2);
    expect(clone).toMatchObject({ ramFile: { fdIndex: 2 }, incoming: { fdIndex: 3 } });
    const nets = lateDeviceCommands(clone).filter((c) => c.execute === 'netdev_add');
    expect(nets.map((c) => c.arguments)).toEqual([
      { type: 'tap', id: 'net0', fd: '3', vhost: true },
      { type: 'tap', id: 'net1', fd: '4', vhost: true },
    ]);
    expect(lateDeviceCommands(clone).find((c) => c.arguments['id'] === 'nic1')?.arguments).toMatchObject({ bus: 'rp2', host_mtu: 1500 });
  });
});

describe('the template key', () => {
  it('ignores what is each sandbox’s own and follows what shapes the VM', () => {
    const a = templateShape(cloneDescription(plan('a@default'), 0));
    const b = templateShape(cloneDescription(plan('b@other', { guestCid: 77, network: { kind: 'passed-taps', taps: [], vhost: false } }), 1));
    expect(b).toEqual(a);
    expect(templateShape(cloneDescription(plan('a@default', { settings: { ...settings, memoryMiB: 512 } }), 0))).not.toEqual(a);
    expect(templateShape(cloneDescription(plan('a@default', { settings: { ...settings, debug: true } }), 0))).not.toEqual(a);
    expect(templateShape(cloneDescription(plan('a@default', { accel: 'kvm' }), 0))).not.toEqual(a);
  });

  it('changes when a file that makes the guest changes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-key-'));
    try {
      for (const f of ['qemu', 'vmlinux', 'rootfs.img', 'qboot.rom']) writeFileSync(join(dir, f), f);
      const d = cloneDescription(
        plan('a@default', { settings: { ...settings, qemuBinary: join(dir, 'qemu'), kernelPath: join(dir, 'vmlinux'), imagePath: join(dir, 'rootfs.img'), firmware: join(dir, 'qboot.rom') } }),
        0,
      );
      const before = templateKey(await templateInputs(d));
      expect(templateKey(await templateInputs(d))).toBe(before);
      utimesSync(join(dir, 'rootfs.img'), new Date(), new Date(Date.now() + 5000));
      expect(templateKey(await templateInputs(d))).not.toBe(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the template store', () => {
  let root: string;
  let inputFile: string;
  let inputs: () => Awaited<ReturnType<typeof templateInputs>>;
  const fill = async (dir: string) => {
    writeFileSync(join(dir, 'ram'), Buffer.alloc(8192, 1));
    writeFileSync(join(dir, 'state'), 'saved state');
    return { bootMs: 10, saveMs: 1 };
  };

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'kata-ts-templates-'));
    inputFile = join(root, 'image');
    writeFileSync(inputFile, 'image');
    lines.length = 0;
    const identity = { path: inputFile, size: 5, mtimeMs: statSync(inputFile).mtimeMs, ino: statSync(inputFile).ino };
    inputs = () => ({ format: 1, shape: {}, files: { image: identity } });
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('publishes a template whole, under its key, with its record', async () => {
    const store = new TemplateStore(join(root, 't'), log);
    let seenWhileMaking: string[] = [];
    const made = await store.make('00000000000000aa', inputs(), async (dir) => {
      seenWhileMaking = [existsSync(store.dirOf('00000000000000aa')) ? 'published' : 'not published', dir];
      return fill(dir);
    });
    expect(seenWhileMaking[0]).toBe('not published');
    expect(seenWhileMaking[1]).toMatch(/\.00000000000000aa\.\d+\.partial$/);
    expect(existsSync(seenWhileMaking[1]!)).toBe(false);
    expect(made).toMatchObject({ key: '00000000000000aa', record: { stateBytes: 11, ramBytes: 8192 } });
    expect(await store.find('00000000000000aa')).toMatchObject({ key: '00000000000000aa' });
  });

  it('discards a damaged template with the reason, so it is made again', async () => {
    const store = new TemplateStore(join(root, 't'), log);
    await store.make('00000000000000bb', inputs(), fill);
    writeFileSync(join(store.dirOf('00000000000000bb'), 'state'), 'saved stat!');
    expect(await store.find('00000000000000bb')).toBeUndefined();
    expect(existsSync(store.dirOf('00000000000000bb'))).toBe(false);
    expect(lines.join('\n')).toMatch(/sandbox template discarded.*key=00000000000000bb reason="its state does not match its sha256"/);
  });

  it('leaves the making to a live process that holds the lock, and takes over a dead one’s', async () => {
    const store = new TemplateStore(join(root, 't'), log);
    mkdirSync(store.root, { recursive: true });
    writeFileSync(join(store.root, '00000000000000cc.lock'), String(process.pid));
    expect(await store.make('00000000000000cc', inputs(), fill)).toBeUndefined();
    writeFileSync(join(store.root, '00000000000000cc.lock'), '999999999');
    expect(await store.make('00000000000000cc', inputs(), fill)).toMatchObject({ key: '00000000000000cc' });
    expect(existsSync(join(store.root, '00000000000000cc.lock'))).toBe(false);
  });

  it('leaves nothing of a make that failed, and prunes what a dead maker left and templates of changed inputs', async () => {
    const store = new TemplateStore(join(root, 't'), log);
    await expect(store.make('00000000000000dd', inputs(), async () => Promise.reject(new Error('boot failed')))).rejects.toThrow('boot failed');
    expect(existsSync(store.dirOf('00000000000000dd'))).toBe(false);
    mkdirSync(join(store.root, '.00000000000000ee.999999999.partial'));
    const made = await store.make('00000000000000ff', inputs(), fill);
    await store.prune();
    expect(existsSync(store.dirOf('00000000000000ff'))).toBe(true);
    const record = JSON.parse(readFileSync(join(made!.dir, TEMPLATE_RECORD), 'utf8')) as TemplateRecord;
    record.inputs.files['image']!.mtimeMs = 12345;
    writeFileSync(join(made!.dir, TEMPLATE_RECORD), JSON.stringify(record));
    await store.prune();
    expect(existsSync(join(store.root, '.00000000000000ee.999999999.partial'))).toBe(false);
    expect(existsSync(store.dirOf('00000000000000ff'))).toBe(false);
  });
});
