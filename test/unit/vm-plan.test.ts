// The one VM description a sandbox boots from: planned from its settings,
// recorded in its VM folder at launch, found again by `kata-ts vm`.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../common/log.js';
import { plainContainerVm, shellCommand, vmCommand } from '../../shim/src/cli/kata-ts-vm.js';
import { qemuCommand } from '../../shim/src/hypervisor/qemu-args.js';
import { QemuVm, VM_DESCRIPTION_FILE } from '../../shim/src/hypervisor/vm.js';
import type { VmDescription } from '../../shim/src/hypervisor/vm-description.js';
import { sandboxDirs } from '../../shim/src/sandbox/sandbox-dirs.js';
import { DEFAULT_SETTINGS } from '../../shim/src/sandbox/settings.js';
import { planVm } from '../../shim/src/sandbox/vm-plan.js';
import { listVmRecords, pickVmRecord } from '../../shim/src/sandbox/vm-records.js';

const settings = { ...DEFAULT_SETTINGS, kernelPath: '/k/vmlinux', imagePath: '/i/rootfs.img', runRoot: '/r' };
const base = { name: 'c1@default', settings, accel: 'tcg' as const, channel: 'serial' as const, guestCid: 9, imageSizeBytes: 64 * 1024 * 1024 };

describe('planVm', () => {
  it('puts every socket and file of the VM in its folder under the run root', () => {
    const d = planVm(base);
    expect(d).toMatchObject({
      name: 'c1@default',
      accel: 'tcg',
      tcgTranslationBufferMiB: 128,
      cpus: 1,
      maxCpus: 4,
      memoryMiB: 256,
      maxMemoryMiB: 4096,
      memorySlots: 2,
      firmware: '/usr/share/qemu/qboot.rom',
      rootfsImage: { path: '/i/rootfs.img', sizeBytes: 64 * 1024 * 1024 },
      sharedFs: { socketPath: '/r/vm/c1@default/virtiofsd.sock', tag: 'kataShared' },
      agentChannel: { kind: 'serial', socketPath: '/r/vm/c1@default/agent.sock', portName: 'agent.channel.0' },
      consoleLogPath: '/r/vm/c1@default/console.log',
      qmpSocketPath: '/r/vm/c1@default/qmp.sock',
      pidFilePath: '/r/vm/c1@default/qemu.pid',
    });
    expect(d.kernel.cmdline).toEqual(expect.arrayContaining(['kata_ts.channel=serial', 'kata_ts.accel=tcg', 'mitigations=off']));
    expect(d.networks).toBeUndefined();
    expect(d.ownNetworkNamespace).toBeUndefined();
    expect(d.dieWithOwner).toBeUndefined();
  });

  it('sizes up to the settings, and leaves out the TCG buffer under KVM and an empty firmware', () => {
    const d = planVm({ ...base, accel: 'kvm', channel: 'vsock', settings: { ...settings, cpus: 6, memoryMiB: 8192, firmware: '' } });
    expect(d).toMatchObject({ cpus: 6, maxCpus: 6, memoryMiB: 8192, maxMemoryMiB: 8192, agentChannel: { kind: 'vsock', guestCid: 9 } });
    expect('tcgTranslationBufferMiB' in d || 'firmware' in d).toBe(false);
  });

  it("hands a pod's taps over as fds in order, keeping their names for the record", () => {
    const d = planVm({ ...base, network: { kind: 'passed-taps', taps: [{ name: 'tap0_kt', mac: '0a:58:00:00:00:01', mtu: 1450 }, { name: 'tap1_kt', mac: '0a:58:00:00:00:02', mtu: 1500 }], vhost: true } });
    expect(d.networks).toEqual([
      { tap: { fdIndex: 0, name: 'tap0_kt' }, mac: '0a:58:00:00:00:01', mtu: 1450, vhost: true },
      { tap: { fdIndex: 1, name: 'tap1_kt' }, mac: '0a:58:00:00:00:02', mtu: 1500, vhost: true },
    ]);
    expect(d.ownNetworkNamespace).toBeUndefined();
  });

  it('gives a network that comes after create a tap QEMU makes in a namespace of its own', () => {
    const d = planVm({ ...base, dieWithOwner: true, network: { kind: 'own-namespace', tap: 'tap0_kt', mac: '02:00:00:00:00:01', vhost: false } });
    expect(d.networks).toEqual([{ tap: { ifname: 'tap0_kt' }, mac: '02:00:00:00:00:01', vhost: false }]);
    expect(qemuCommand(d).slice(0, 8)).toEqual(['setpriv', '--pdeathsig', 'KILL', '--', 'unshare', '--net', '--', '/usr/bin/qemu-system-x86_64']);
  });

  it("names a long sandbox's folder by hash, as the cleanup finds it", () => {
    const name = `${'a'.repeat(40)}@k8s.io`;
    expect(planVm({ ...base, name }).pidFilePath).toBe(join(sandboxDirs('/r', name).vmDir, 'qemu.pid'));
  });
});

describe('plainContainerVm', () => {
  const pvm = { kvmDevice: true, kvmModules: ['kvm', 'kvm_pvm'], vhostVsock: false };

  it("is what the shim starts for ctr run: the host's accel and channel, one NIC in QEMU's own namespace", () => {
    const d = plainContainerVm(settings, pvm, 2 * 1024 * 1024, false);
    expect(d).toMatchObject({ name: 'example@default', accel: 'tcg', agentChannel: { kind: 'serial' }, ownNetworkNamespace: true });
    expect(d.networks).toEqual([{ tap: { ifname: 'tap0_kt' }, mac: expect.stringMatching(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/), vhost: false }]);
    expect(Number.parseInt(d.networks![0]!.mac.slice(0, 2), 16) & 0x03).toBe(0x02);
    const kvm = plainContainerVm({ ...settings, networkModel: 'none' }, { kvmDevice: true, kvmModules: ['kvm', 'kvm_intel'], vhostVsock: true }, 2 * 1024 * 1024, false);
    expect(kvm).toMatchObject({ accel: 'kvm', agentChannel: { kind: 'vsock' } });
    expect(kvm.networks).toBeUndefined();
  });
});

describe('shellCommand', () => {
  it('prints the argv as a shell takes it, one QEMU option a line', () => {
    const text = shellCommand(['unshare', '--net', '--', '/q', '-name', 'x', '-append', "a b'c", '-nodefaults', '-device', 'n,romfile='], '/q');
    expect(text).toBe(["unshare --net -- /q \\", '  -name x \\', `  -append 'a b'\\''c' \\`, '  -nodefaults \\', '  -device n,romfile=', ''].join('\n'));
  });
});

describe('the recorded VM', () => {
  const root = mkdtempSync(join(tmpdir(), 'kata-ts-vm-records-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  function record(runRoot: string, name: string): VmDescription {
    const d = planVm({ ...base, name, settings: { ...settings, runRoot } });
    const { vmDir } = sandboxDirs(runRoot, name);
    mkdirSync(vmDir, { recursive: true });
    writeFileSync(join(vmDir, VM_DESCRIPTION_FILE), JSON.stringify(d));
    return d;
  }

  it('is written into the VM folder as QEMU is launched, and goes with the folder', async () => {
    const d = { ...planVm({ ...base, settings: { ...settings, runRoot: join(root, 'launch') } }), qemuBinary: '/bin/true' };
    const runDir = sandboxDirs(join(root, 'launch'), d.name).vmDir;
    const vm = await QemuVm.launch({ description: d, runDir, log: createLogger({ level: 'error' }) });
    expect(JSON.parse(readFileSync(join(runDir, VM_DESCRIPTION_FILE), 'utf8'))).toEqual(d);
    await vm.stop({ gracefulMs: 0 });
    expect(existsSync(runDir)).toBe(false);
  });

  it('is found by full name or by id, and an id in two namespaces must be named with its namespace', async () => {
    const runRoot = join(root, 'find');
    const a = record(runRoot, 'web@default');
    record(runRoot, 'web@k8s.io');
    const long = record(runRoot, `${'p'.repeat(40)}@k8s.io`);
    const job = record(runRoot, 'job-0123456789ab');
    mkdirSync(join(runRoot, 'vm', 'booting@default'));
    const found = await listVmRecords(runRoot);
    expect(found.records.map((r) => r.name).sort()).toEqual([long.name, job.name, 'web@default', 'web@k8s.io'].sort());
    expect(found.unrecorded).toEqual(['booting@default']);
    expect(pickVmRecord(found, 'web@default', runRoot).description).toEqual(a);
    expect(pickVmRecord(found, 'p'.repeat(40), runRoot).description).toEqual(long);
    expect(pickVmRecord(found, 'job-0123456789ab', runRoot).description).toEqual(job);
    expect(() => pickVmRecord(found, 'web', runRoot)).toThrow('sandbox web is in more than one namespace (web@default, web@k8s.io); name it as id@namespace');
    expect(() => pickVmRecord(found, 'booting', runRoot)).toThrow(/has a folder .* but no vm\.json/);
    expect(() => pickVmRecord(found, 'gone', runRoot)).toThrow(`no sandbox gone under ${runRoot}/vm (there are:`);
    expect((await listVmRecords(join(root, 'nothing'))).records).toEqual([]);
  });

  it('refuses a record that is not a VM description', async () => {
    const runRoot = join(root, 'bad');
    mkdirSync(join(runRoot, 'vm', 'x'), { recursive: true });
    writeFileSync(join(runRoot, 'vm', 'x', VM_DESCRIPTION_FILE), '{"name": 1}');
    await expect(listVmRecords(runRoot)).rejects.toThrow(/is not a VM description/);
  });
});

describe('kata-ts vm', () => {
  const root = mkdtempSync(join(tmpdir(), 'kata-ts-vm-cli-'));
  const image = join(root, 'rootfs.img');
  writeFileSync(image, Buffer.alloc(2 * 1024 * 1024));
  const config = join(root, 'configuration.toml');
  writeFileSync(config, `[hypervisor]\nimage = "${image}"\naccel = "tcg"\n[agent]\nchannel = "serial"\n[runtime]\nrun_root = "${root}"\n`);
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  afterEach(() => vi.restoreAllMocks());

  async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
    vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
    const code = await vmCommand(argv);
    vi.restoreAllMocks();
    return { code, out, err };
  }

  it("prints a running sandbox's recorded VM: the exact argv, and the same VM as libvirt XML", async () => {
    const d = planVm({ ...base, name: 'web@default', settings: { ...settings, runRoot: root } });
    mkdirSync(join(root, 'vm', 'web@default'), { recursive: true });
    writeFileSync(join(root, 'vm', 'web@default', VM_DESCRIPTION_FILE), JSON.stringify(d));
    writeFileSync(join(root, 'vm', 'web@default', 'qemu.pid'), String(process.pid));
    const argv = await run('argv', 'web', '--json', '--config', config);
    expect(argv).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(argv.out)).toEqual(qemuCommand(d));
    const xml = await run('xml', 'web@default', '--config', config);
    expect(xml.code).toBe(0);
    expect(xml.out).toContain("<source path='" + d.consoleLogPath + "' append='on'/>");
  });

  it('without SANDBOX, shows the VM the configuration would start for a plain container', async () => {
    const r = await run('argv', '--config', config);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`-name kata-ts-example@default \\\n`);
    expect(r.out).toContain(`mem-path=${image},size=2097152,`);
    expect((await run('xml', '--config', config)).out).toMatch(/^<domain type='qemu'/);
  });

  it('says what is wrong: an unknown sandbox, a bad command, --json with xml', async () => {
    expect(await run('xml', 'nosuch', '--config', config)).toMatchObject({ code: 1, err: expect.stringContaining('kata-ts vm: no sandbox nosuch under') });
    expect((await run('show')).code).toBe(2);
    expect(await run('xml', '--json')).toMatchObject({ code: 2, err: expect.stringContaining('--json is for argv') });
    expect((await run('--help')).out).toContain('usage: kata-ts vm xml [SANDBOX]');
  });
});
