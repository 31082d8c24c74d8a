// kata-ts check's verdicts over faked host facts: every verdict, and the exit
// code each host gets.
import { describe, expect, it } from 'vitest';
import type { HostFacts } from '../../shim/src/check/host-facts.js';
import { checkHost, QEMU_DEVICES, QEMU_OBJECTS, QEMU_VSOCK_DEVICE, summarise, type CheckSettings, type Finding } from '../../shim/src/check/verdicts.js';
import { renderCheck } from '../../shim/src/check/render.js';
import { renderQemuArgs } from '../../shim/src/hypervisor/qemu-args.js';
import type { VmDescription } from '../../shim/src/hypervisor/vm-description.js';
import { DEFAULT_SETTINGS } from '../../shim/src/sandbox/settings.js';

const MIB = 1024 * 1024;
const record = (key: string) => ({ key, sha256: 'a'.repeat(64), fields: { key, sha256: 'a'.repeat(64) }, inputs: [] });

/** A host with hardware KVM and everything kata-ts can use. */
function kvmHost(): HostFacts {
  return {
    uid: 0,
    cpuFlags: ['vmx'],
    kvmModules: ['kvm', 'kvm_intel'],
    kvm: { path: '/dev/kvm', state: 'ok' },
    vhostVsock: { path: '/dev/vhost-vsock', state: 'ok' },
    vhostNet: { path: '/dev/vhost-net', state: 'ok' },
    tun: { path: '/dev/net/tun', state: 'ok' },
    qemu: { command: '/usr/bin/qemu-system-x86_64', state: 'ok', version: '7.2.22', devices: [...QEMU_DEVICES, QEMU_VSOCK_DEVICE, 'e1000'], objects: [...QEMU_OBJECTS] },
    virtiofsd: { command: '/usr/lib/qemu/virtiofsd', state: 'ok', version: '7.2.22' },
    containerd: { command: 'containerd', state: 'ok', version: '1.6.20~ds1' },
    slirp4netns: { command: 'slirp4netns', state: 'ok', version: '1.2.0' },
    firmware: { path: '/usr/share/qemu/qboot.rom', present: true },
    cgroups: { mode: 'v2', controllers: ['cpu', 'memory', 'pids'] },
    kernel: { path: '/opt/kata-ts/vmlinux', size: 20 * MIB, record: record('k1'), digestMatches: true, release: '6.1.192-kata-ts' },
    rootfs: { path: '/opt/kata-ts/rootfs.img', size: 128 * MIB, record: record('r1'), digestMatches: true },
    shim: { searched: ['/usr/local/bin', '/usr/bin'], found: '/usr/local/bin/containerd-shim-kata-ts-v2', target: '/opt/kata-ts/bin/containerd-shim-kata-ts-v2', runtimeRoot: '/opt/kata-ts', run: { command: 'x', state: 'ok', version: 'kata-ts 0.1.0' } },
    socketFolder: { path: '/run/containerd/s', state: 'ok', mode: 0o700, uid: 0 },
    templates: { enabled: true, path: '/var/cache/kata-ts/templates', count: 2, bytes: 100 * MIB },
    ksm: 'on',
    missingTools: [],
    runtimeRoot: '/opt/kata-ts',
  };
}

/** This kind of machine: PVM KVM, no vhost-vsock, no vhost-net. */
function pvmHost(): HostFacts {
  return {
    ...kvmHost(),
    cpuFlags: ['hypervisor'],
    kvmModules: ['kvm', 'kvm_pvm'],
    vhostVsock: { path: '/dev/vhost-vsock', state: 'absent' },
    vhostNet: { path: '/dev/vhost-net', state: 'absent' },
  };
}

const settings: CheckSettings = { ...DEFAULT_SETTINGS, kernelPath: '/opt/kata-ts/vmlinux', imagePath: '/opt/kata-ts/rootfs.img' };
const byId = (findings: Finding[], id: string) => {
  const f = findings.find((x) => x.id === id);
  if (!f) throw new Error(`no finding ${id} in ${findings.map((x) => x.id).join(', ')}`);
  return f;
};
const check = (facts: HostFacts, s: Partial<CheckSettings> = {}, strict = false) => checkHost(facts, { ...settings, ...s }, strict);

describe('a ready KVM host', () => {
  it('passes every requirement and exits 0, with KVM and vhost-vsock chosen', () => {
    const r = check(kvmHost());
    expect(r.findings.filter((f) => f.verdict !== 'ok')).toEqual([]);
    expect(r).toMatchObject({ status: 'ready', exitCode: 0, accel: { value: 'kvm' }, channel: { value: 'vsock' } });
    expect(byId(r.findings, 'kvm').reason).toMatch(/kvm_intel.*vmx/);
    expect(byId(r.findings, 'qemu-devices').reason).toContain(QEMU_VSOCK_DEVICE);
  });

  it('is still ready when only optional things are missing', () => {
    const r = check({ ...kvmHost(), ksm: 'off', vhostNet: { path: '/dev/vhost-net', state: 'absent' }, slirp4netns: { command: 'slirp4netns', state: 'missing', error: 'not found' } });
    expect(r.exitCode).toBe(0);
    expect(byId(r.findings, 'ksm')).toMatchObject({ verdict: 'optional', reason: expect.stringMatching(/echo 1 > \/sys\/kernel\/mm\/ksm\/run/) });
    expect(byId(r.findings, 'vhost-net')).toMatchObject({ verdict: 'optional', reason: expect.stringMatching(/modprobe vhost_net.*userspace virtio-net/) });
    expect(byId(r.findings, 'slirp4netns')).toMatchObject({ verdict: 'optional', reason: expect.stringMatching(/apt-get install slirp4netns.*--network nat/) });
  });
});

describe('KVM and TCG', () => {
  it('a PVM KVM runs degraded (exit 2): it cannot run a stock guest, and TCG is used', () => {
    const r = check(pvmHost());
    expect(r).toMatchObject({ status: 'degraded', exitCode: 2, accel: { value: 'tcg' }, channel: { value: 'serial' } });
    const kvm = byId(r.findings, 'kvm');
    expect(kvm.verdict).toBe('degraded');
    expect(kvm.reason).toMatch(/PVM \(kvm_pvm\), which cannot run a stock guest kernel; TCG software emulation will be used/);
    expect(kvm.reason).toMatch(/load kvm_intel or kvm_amd/);
    expect(renderCheck(r, false)).toMatch(/^kata-ts check: runs degraded: TCG software emulation \(exit 2\)/);
  });

  it('--strict makes a degraded host exit 1', () => {
    expect(check(pvmHost(), {}, true)).toMatchObject({ status: 'degraded', exitCode: 1 });
  });

  it('a CPU without vmx or svm in a VM points at nested virtualisation', () => {
    const r = check({ ...kvmHost(), cpuFlags: ['hypervisor'], kvmModules: [], kvm: { path: '/dev/kvm', state: 'absent' } });
    expect(r.exitCode).toBe(2);
    expect(byId(r.findings, 'kvm').reason).toMatch(/neither vmx nor svm.*nested virtualisation/);
    expect(byId(r.findings, 'kvm-device').verdict).toBe('optional');
  });

  it('vmx without kvm_intel says modprobe kvm_intel', () => {
    const r = check({ ...kvmHost(), kvmModules: [], kvm: { path: '/dev/kvm', state: 'absent' } });
    expect(byId(r.findings, 'kvm')).toMatchObject({ verdict: 'degraded', reason: expect.stringMatching(/modprobe kvm_intel/) });
  });

  it('a /dev/kvm that cannot be opened is degraded, with what to do', () => {
    const r = check({ ...kvmHost(), uid: 1000, kvm: { path: '/dev/kvm', state: 'unusable', error: 'EACCES' } });
    expect(r.accel?.value).toBe('tcg');
    expect(byId(r.findings, 'kvm-device')).toMatchObject({ verdict: 'degraded', reason: expect.stringMatching(/EACCES.*group kvm/) });
    expect(byId(r.findings, 'root').verdict).toBe('optional');
  });

  it('accel = "kvm" where KVM cannot run the guest cannot run (exit 1)', () => {
    const r = check(pvmHost(), { accel: 'kvm' });
    expect(r.exitCode).toBe(1);
    expect(r.accel).toBeUndefined();
    expect(byId(r.findings, 'kvm')).toMatchObject({ verdict: 'fatal', reason: expect.stringMatching(/accel = "kvm" was asked for.*accel = "auto"/) });
  });

  it('accel = "tcg" on a KVM host is degraded by configuration, and says KVM is there', () => {
    const r = check(kvmHost(), { accel: 'tcg' });
    expect(r.exitCode).toBe(2);
    expect(byId(r.findings, 'kvm').reason).toMatch(/by configuration.*KVM is usable here/);
  });
});

describe('device nodes', () => {
  it('without vhost-vsock the agent channel is the serial port, noted and not degraded', () => {
    const r = check({ ...kvmHost(), vhostVsock: { path: '/dev/vhost-vsock', state: 'absent' } });
    expect(r).toMatchObject({ exitCode: 0, channel: { value: 'serial' } });
    expect(byId(r.findings, 'vhost-vsock')).toMatchObject({ verdict: 'optional', reason: expect.stringMatching(/modprobe vhost_vsock.*virtio-serial/) });
    // vhost-vsock-pci is then not needed from QEMU.
    expect(byId(r.findings, 'qemu-devices').reason).not.toContain(QEMU_VSOCK_DEVICE);
  });

  it('agent.channel = "vsock" without /dev/vhost-vsock cannot run', () => {
    const r = check(pvmHost(), { agentChannel: 'vsock' });
    expect(r.exitCode).toBe(1);
    expect(byId(r.findings, 'vhost-vsock')).toMatchObject({ verdict: 'fatal', reason: expect.stringMatching(/agent.channel = "auto"/) });
  });

  it('vhost-net: disabled by configuration, or not needed without NICs', () => {
    const host = { ...kvmHost(), vhostNet: { path: '/dev/vhost-net', state: 'absent' as const } };
    expect(byId(check(host, { disableVhostNet: true }).findings, 'vhost-net')).toMatchObject({ verdict: 'ok', reason: expect.stringMatching(/disable_vhost_net/) });
    expect(byId(check(host, { networkModel: 'none' }).findings, 'vhost-net').verdict).toBe('ok');
  });

  it('no tun cannot run, unless sandboxes have no NICs', () => {
    const host = { ...kvmHost(), tun: { path: '/dev/net/tun', state: 'absent' as const } };
    expect(check(host).exitCode).toBe(1);
    expect(byId(check(host).findings, 'tun').reason).toMatch(/modprobe tun.*internetworking_model = "none"/);
    expect(check(host, { networkModel: 'none' }).exitCode).toBe(0);
  });
});

describe('QEMU, firmware and virtiofsd', () => {
  it('no QEMU cannot run (exit 1), and says what to install', () => {
    const r = check({ ...kvmHost(), qemu: { command: '/usr/bin/qemu-system-x86_64', state: 'missing', error: 'not found', devices: [], objects: [] } });
    expect(r).toMatchObject({ status: 'cannot-run', exitCode: 1 });
    expect(byId(r.findings, 'qemu')).toMatchObject({ verdict: 'fatal', reason: expect.stringMatching(/not found: apt-get install qemu-system-x86, or set hypervisor.path/) });
    expect(r.findings.find((f) => f.id === 'qemu-devices')).toBeUndefined();
    expect(renderCheck(r, false)).toMatch(/^kata-ts check: cannot run sandboxes: QEMU \(exit 1\)/);
  });

  it('a QEMU that hangs is named with the deadline', () => {
    const r = check({ ...kvmHost(), qemu: { command: '/q', state: 'failed', error: 'gave no answer within 10 s', devices: [], objects: [] } });
    expect(byId(r.findings, 'qemu').reason).toMatch(/\/q does not run: gave no answer within 10 s/);
  });

  it('a QEMU without a device we need cannot run, naming it', () => {
    const qemu = { ...kvmHost().qemu, devices: QEMU_DEVICES.filter((d) => d !== 'vhost-user-fs-pci'), objects: ['memory-backend-file'] };
    const r = check({ ...kvmHost(), vhostVsock: { path: '/dev/vhost-vsock', state: 'absent' }, qemu });
    expect(r.exitCode).toBe(1);
    expect(byId(r.findings, 'qemu-devices').reason).toMatch(/lacks vhost-user-fs-pci, memory-backend-memfd, rng-random/);
  });

  it('the vsock channel needs vhost-vsock-pci from QEMU', () => {
    const qemu = { ...kvmHost().qemu, devices: [...QEMU_DEVICES] };
    expect(byId(check({ ...kvmHost(), qemu }).findings, 'qemu-devices').reason).toMatch(/lacks vhost-vsock-pci/);
  });

  it('no virtiofsd cannot run (exit 1)', () => {
    const r = check({ ...kvmHost(), virtiofsd: { command: '/usr/lib/qemu/virtiofsd', state: 'missing', error: 'not found' } });
    expect(r.exitCode).toBe(1);
    expect(byId(r.findings, 'virtiofsd').reason).toMatch(/\/usr\/lib\/qemu\/virtiofsd not found.*hypervisor.virtio_fs_daemon/);
  });

  it('missing firmware cannot run; no firmware configured is QEMU’s BIOS', () => {
    expect(byId(check({ ...kvmHost(), firmware: { path: '/fw.rom', present: false } }).findings, 'firmware')).toMatchObject({
      verdict: 'fatal',
      reason: expect.stringMatching(/\/fw.rom is missing.*hypervisor.firmware = ""/),
    });
    const { firmware: _, ...noFirmware } = kvmHost();
    expect(byId(check(noFirmware).findings, 'firmware')).toMatchObject({ verdict: 'ok', reason: expect.stringMatching(/default BIOS/) });
  });

  it('QEMU_DEVICES and QEMU_OBJECTS cover every device and object a sandbox’s command line uses', () => {
    const d: VmDescription = {
      name: 'sb',
      qemuBinary: '/q',
      accel: 'kvm',
      cpus: 1,
      maxCpus: 2,
      memoryMiB: 256,
      maxMemoryMiB: 512,
      memorySlots: 1,
      firmware: '/fw',
      kernel: { path: '/k', cmdline: [] },
      rootfsImage: { path: '/i', sizeBytes: 2 * MIB },
      sharedFs: { socketPath: '/v.sock', tag: 't' },
      networks: [{ tap: { fdIndex: 0 }, mac: '02:00:00:00:00:01', vhost: true }],
      agentChannel: { kind: 'serial', socketPath: '/a.sock', portName: 'p' },
      consoleLogPath: '/c',
      qmpSocketPath: '/qmp',
      pidFilePath: '/pid',
    };
    const used = (args: string[], flag: string) => args.flatMap((a, i) => (args[i - 1] === flag ? [a.split(',')[0]!] : []));
    const serial = renderQemuArgs(d);
    const vsock = renderQemuArgs({ ...d, agentChannel: { kind: 'vsock', guestCid: 3 } });
    expect(new Set(used(serial, '-device'))).toEqual(new Set(QEMU_DEVICES));
    expect(used(vsock, '-device')).toContain(QEMU_VSOCK_DEVICE);
    expect(new Set(used(serial, '-object'))).toEqual(new Set(QEMU_OBJECTS));
  });
});

describe('guest images', () => {
  it('a missing kernel cannot run, and says how to get one', () => {
    const r = check({ ...kvmHost(), kernel: { path: '/opt/kata-ts/vmlinux', error: 'missing' } });
    expect(r.exitCode).toBe(1);
    expect(byId(r.findings, 'guest-kernel').reason).toMatch(/vmlinux: missing: reinstall \(make install\), or set hypervisor.kernel/);
  });

  it('in a checkout, the fix is the make target', () => {
    const r = check({ ...kvmHost(), checkout: '/src', rootfs: { path: '/src/build/rootfs.img', error: 'missing' } });
    expect(byId(r.findings, 'guest-rootfs').reason).toMatch(/make rootfs/);
  });

  it('a rootfs image that is not a multiple of 2 MiB cannot run', () => {
    const r = check({ ...kvmHost(), rootfs: { ...kvmHost().rootfs, size: 2 * MIB + 512 } });
    expect(byId(r.findings, 'guest-rootfs')).toMatchObject({ verdict: 'fatal', reason: expect.stringMatching(/multiple of 2 MiB/) });
  });

  it('an image without a build record is noted, not degraded', () => {
    const r = check({ ...kvmHost(), rootfs: { path: '/opt/kata-ts/rootfs.img', size: 128 * MIB } });
    expect(r.exitCode).toBe(0);
    expect(byId(r.findings, 'guest-rootfs')).toMatchObject({ verdict: 'optional', reason: expect.stringMatching(/no build record \(\/opt\/kata-ts\/rootfs.img.key\)/) });
  });

  it('an image changed after its build is degraded', () => {
    const r = check({ ...kvmHost(), kernel: { ...kvmHost().kernel, digestMatches: false } });
    expect(r.exitCode).toBe(2);
    expect(byId(r.findings, 'guest-kernel').reason).toMatch(/not the image its record \(key k1\) describes/);
  });

  it('a kernel whose inputs now give another key is stale', () => {
    const kernel = { ...kvmHost().kernel, current: { key: 'k2', changed: [], missing: [] } };
    const r = check({ ...kvmHost(), checkout: '/src', kernel });
    expect(byId(r.findings, 'guest-kernel')).toMatchObject({ verdict: 'degraded', reason: expect.stringMatching(/stale: built from inputs with key k1, the checkout's give k2 now; make kernel/) });
  });

  it('a rootfs whose inputs changed is stale, naming them', () => {
    const rootfs = { ...kvmHost().rootfs, current: { changed: ['build/agent/agent.cjs'], missing: [] } };
    const r = check({ ...kvmHost(), checkout: '/src', rootfs });
    expect(byId(r.findings, 'guest-rootfs').reason).toMatch(/stale: build\/agent\/agent.cjs changed since it was built/);
  });

  it('a matching image says so, with the kernel release', () => {
    expect(byId(check(kvmHost()).findings, 'guest-kernel').reason).toBe('/opt/kata-ts/vmlinux (6.1.192-kata-ts) matches its build record (key k1)');
  });
});

describe('containerd, the socket folder and the rest', () => {
  it('a shim containerd cannot find cannot run, with where it looked and the fix', () => {
    const r = check({ ...kvmHost(), shim: { searched: ['/usr/local/bin', '/usr/bin'] } });
    expect(r.exitCode).toBe(1);
    expect(byId(r.findings, 'shim-on-path').reason).toMatch(/on none of \/usr\/local\/bin:\/usr\/bin: make install/);
  });

  it('a shim that does not run cannot run', () => {
    const shim = { ...kvmHost().shim, run: { command: 'x', state: 'failed' as const, error: 'exited with 127' } };
    expect(byId(check({ ...kvmHost(), shim }).findings, 'shim-on-path')).toMatchObject({ verdict: 'fatal', reason: expect.stringMatching(/does not run \(exited with 127\)/) });
  });

  it('notes a shim from another runtime folder than this command’s', () => {
    const r = check({ ...kvmHost(), runtimeRoot: '/src/build' });
    expect(byId(r.findings, 'shim-on-path')).toMatchObject({ verdict: 'ok', reason: expect.stringMatching(/runtime in \/opt\/kata-ts, not this command's \(\/src\/build\)/) });
  });

  it('a missing socket folder is made on first use; a bad one cannot run', () => {
    expect(byId(check({ ...kvmHost(), socketFolder: { path: '/run/containerd/s', state: 'absent' } }).findings, 'socket-folder')).toMatchObject({
      verdict: 'ok',
      reason: expect.stringMatching(/the first shim makes it \(mode 0700\)/),
    });
    expect(byId(check({ ...kvmHost(), socketFolder: { path: '/run/containerd/s', state: 'not-directory', mode: 0o644, uid: 0 } }).findings, 'socket-folder').verdict).toBe('fatal');
    const r = check({ ...kvmHost(), uid: 1000, socketFolder: { path: '/run/containerd/s', state: 'not-writable', mode: 0o700, uid: 0 } });
    expect(byId(r.findings, 'socket-folder').reason).toMatch(/mode 0700, owner uid 0\) is not writable by uid 1000/);
  });

  it('no containerd is optional; missing host tools cannot run', () => {
    expect(byId(check({ ...kvmHost(), containerd: { command: 'containerd', state: 'missing', error: 'not found' } }).findings, 'containerd').verdict).toBe('optional');
    const r = check({ ...kvmHost(), missingTools: ['tc', 'setpriv'] });
    expect(r.exitCode).toBe(1);
    expect(byId(r.findings, 'host-tools').reason).toMatch(/^tc, setpriv not found/);
  });

  it('cgroups: any layout will do (limits are the guest’s); none at all is noted', () => {
    expect(byId(check({ ...kvmHost(), cgroups: { mode: 'hybrid', controllers: ['memory'] } }).findings, 'cgroups').verdict).toBe('ok');
    expect(byId(check({ ...kvmHost(), cgroups: { mode: 'none', controllers: [] } }).findings, 'cgroups').verdict).toBe('optional');
  });

  it('a fatal finding outweighs degraded ones', () => {
    const f = (verdict: Finding['verdict']): Finding => ({ id: verdict, requirement: verdict, verdict, reason: '' });
    expect(summarise([f('ok'), f('degraded'), f('fatal')], false)).toEqual({ status: 'cannot-run', exitCode: 1 });
    expect(summarise([f('ok'), f('optional')], true)).toEqual({ status: 'ready', exitCode: 0 });
  });
});

describe('sandbox templates', () => {
  it('says how many there are, and when none can be made or they are off, that sandboxes boot cold', () => {
    expect(byId(check(kvmHost()).findings, 'templates')).toMatchObject({ verdict: 'ok', reason: 'on: 2 made (100 MB) in /var/cache/kata-ts/templates; the first sandbox of each VM shape makes its template' });
    const readOnly = check({ ...kvmHost(), templates: { enabled: true, path: '/ro/templates', unwritable: '/ro: EROFS', count: 0, bytes: 0 } });
    expect(readOnly.exitCode).toBe(0);
    expect(byId(readOnly.findings, 'templates')).toMatchObject({ verdict: 'optional', reason: expect.stringMatching(/^on, but \/ro: EROFS: no template can be made, so every sandbox boots cold/) });
    const off = check({ ...kvmHost(), templates: { enabled: false, path: '/t', count: 0, bytes: 0 } });
    expect(byId(off.findings, 'templates')).toMatchObject({ verdict: 'optional', reason: expect.stringContaining('enable_template = false') });
  });
});
