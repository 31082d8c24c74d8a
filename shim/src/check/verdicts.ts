// Turns host facts into verdicts: for each requirement, ok, degraded (runs,
// but slower or not as built), optional (missing, and kata-ts does without)
// or fatal (a sandbox cannot start), with a reason that says what to do. Pure,
// so every verdict is tested with faked facts. The KVM/TCG and channel
// decisions are accel.ts's own, the ones a sandbox makes when it boots.
import { chooseAccel, chooseChannel, HostCapabilityError, kvmUsability, type ChannelKind, type Choice, type HostProbe } from '../hypervisor/accel.js';
import type { Accel } from '../hypervisor/vm-description.js';
import type { SandboxSettings } from '../sandbox/settings.js';
import type { CommandFacts, HostFacts } from './host-facts.js';
import type { ImageFacts } from './image-record.js';

export type Verdict = 'ok' | 'degraded' | 'optional' | 'fatal';

export interface Finding {
  id: string;
  requirement: string;
  verdict: Verdict;
  reason: string;
}

export type CheckSettings = Pick<
  SandboxSettings,
  'accel' | 'agentChannel' | 'disableVhostNet' | 'networkModel' | 'qemuBinary' | 'virtiofsdBinary' | 'firmware' | 'kernelPath' | 'imagePath'
>;

export type Status = 'ready' | 'degraded' | 'cannot-run';

export interface CheckReport {
  status: Status;
  /** 0 ready, 1 cannot run, 2 runs degraded (1 with --strict). */
  exitCode: 0 | 1 | 2;
  /** What a sandbox started now would use, and why; absent when the configuration makes it impossible. */
  accel?: Choice<Accel>;
  channel?: Choice<ChannelKind>;
  findings: Finding[];
}

/** Every QEMU device type a sandbox's command line uses (qemu-args.ts); vhost-vsock-pci only with the vsock channel. */
export const QEMU_DEVICES = ['nvdimm', 'vhost-user-fs-pci', 'virtio-serial-pci', 'virtserialport', 'virtio-rng-pci', 'virtio-net-pci', 'virtio-balloon-pci'];
export const QEMU_VSOCK_DEVICE = 'vhost-vsock-pci';
/** Guest RAM virtiofsd can map, the rootfs image's nvdimm backend, the guest's entropy. */
export const QEMU_OBJECTS = ['memory-backend-memfd', 'memory-backend-file', 'rng-random'];

const MIB = 1024 * 1024;

const finding = (id: string, requirement: string, verdict: Verdict, reason: string): Finding => ({ id, requirement, verdict, reason });

/** accel.ts's view of the host, from the facts (a device that cannot be opened counts as missing). */
export function accelProbe(f: HostFacts): HostProbe {
  return { kvmDevice: f.kvm.state === 'ok', kvmModules: f.kvmModules, vhostVsock: f.vhostVsock.state === 'ok' };
}

/** What would make KVM usable here. */
function kvmHint(f: HostFacts): string {
  const has = (flag: string) => f.cpuFlags.includes(flag);
  if (f.kvmModules.includes('kvm_pvm'))
    return 'PVM runs only guests built for it; on a host with hardware virtualisation (vmx or svm) load kvm_intel or kvm_amd instead';
  if (!has('vmx') && !has('svm'))
    return has('hypervisor')
      ? 'the CPU shows neither vmx nor svm and this host is itself a VM: enable nested virtualisation on its hypervisor'
      : 'the CPU shows neither vmx nor svm: enable virtualisation (VT-x, AMD-V) in the firmware';
  if (has('vmx') && !f.kvmModules.includes('kvm_intel')) return 'the CPU has vmx: modprobe kvm_intel';
  if (has('svm') && !f.kvmModules.includes('kvm_amd')) return 'the CPU has svm: modprobe kvm_amd';
  return f.kvm.state === 'unusable' ? `open /dev/kvm failed (${f.kvm.error}): run as root, as containerd runs the shim` : 'modprobe kvm';
}

function kvmFinding(f: HostFacts, s: CheckSettings): { finding: Finding; accel?: Choice<Accel> } {
  const req = 'KVM usable';
  let accel: Choice<Accel>;
  try {
    accel = chooseAccel(s.accel, accelProbe(f));
  } catch (err) {
    if (!(err instanceof HostCapabilityError)) throw err;
    return { finding: finding('kvm', req, 'fatal', `${err.message}; ${kvmHint(f)}, or set hypervisor.accel = "auto" to fall back to TCG`) };
  }
  if (accel.value === 'kvm') {
    const flag = f.cpuFlags.find((x) => x === 'vmx' || x === 'svm');
    return { accel, finding: finding('kvm', req, 'ok', `${accel.reason}${flag ? ` (CPU flag ${flag})` : ''}; sandboxes run under KVM`) };
  }
  if (s.accel === 'tcg') {
    const usable = kvmUsability(accelProbe(f)).usable;
    return {
      accel,
      finding: finding('kvm', req, 'degraded', `hypervisor.accel = "tcg": TCG software emulation by configuration (much slower)${usable ? '; KVM is usable here: set accel = "auto"' : ''}`),
    };
  }
  const why = kvmUsability(accelProbe(f)).reason;
  return { accel, finding: finding('kvm', req, 'degraded', `${why}; TCG software emulation will be used (much slower). ${capitalise(kvmHint(f))}`) };
}

const capitalise = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

function kvmDeviceFinding(f: HostFacts, s: CheckSettings): Finding {
  const req = '/dev/kvm access';
  switch (f.kvm.state) {
    case 'ok':
      return finding('kvm-device', req, 'ok', 'opened read-write');
    case 'absent':
      return finding('kvm-device', req, 'optional', `no /dev/kvm: TCG is used without it (${kvmHint(f)})`);
    case 'unusable':
      return finding(
        'kvm-device',
        req,
        s.accel === 'tcg' ? 'optional' : 'degraded',
        `cannot open /dev/kvm (${f.kvm.error}): run as root, as containerd runs the shim, or give this user access (group kvm)`,
      );
  }
}

function channelFinding(f: HostFacts, s: CheckSettings): { finding: Finding; channel?: Choice<ChannelKind> } {
  const req = 'vhost-vsock';
  let channel: Choice<ChannelKind>;
  try {
    channel = chooseChannel(s.agentChannel, accelProbe(f));
  } catch (err) {
    if (!(err instanceof HostCapabilityError)) throw err;
    return { finding: finding('vhost-vsock', req, 'fatal', `${err.message}, or set agent.channel = "auto" to use the virtio-serial port`) };
  }
  if (channel.value === 'vsock') return { channel, finding: finding('vhost-vsock', req, 'ok', '/dev/vhost-vsock opened: the agent channel is vhost-vsock') };
  if (f.vhostVsock.state === 'ok') return { channel, finding: finding('vhost-vsock', req, 'ok', 'available, but agent.channel = "serial" uses the virtio-serial port') };
  const why = f.vhostVsock.state === 'absent' ? '/dev/vhost-vsock is missing (modprobe vhost_vsock)' : `cannot open /dev/vhost-vsock (${f.vhostVsock.error})`;
  return { channel, finding: finding('vhost-vsock', req, 'optional', `${why}: the agent talks over the virtio-serial port instead (the fallback; vhost-vsock is the production channel)`) };
}

function vhostNetFinding(f: HostFacts, s: CheckSettings): Finding {
  const req = 'vhost-net';
  if (s.networkModel === 'none') return finding('vhost-net', req, 'ok', 'not needed: runtime.internetworking_model = "none" gives sandboxes no NIC');
  if (s.disableVhostNet) return finding('vhost-net', req, 'ok', 'not used: hypervisor.disable_vhost_net = true (NICs use QEMU\'s userspace virtio-net)');
  if (f.vhostNet.state === 'ok') return finding('vhost-net', req, 'ok', 'opened: NICs move packets in the host kernel');
  const why = f.vhostNet.state === 'absent' ? '/dev/vhost-net is missing (modprobe vhost_net)' : `cannot open /dev/vhost-net (${f.vhostNet.error})`;
  return finding('vhost-net', req, 'optional', `${why}: NICs use QEMU's userspace virtio-net, which is slower`);
}

function tunFinding(f: HostFacts, s: CheckSettings): Finding {
  const req = 'tun';
  if (f.tun.state === 'ok') return finding('tun', req, 'ok', '/dev/net/tun opened: sandboxes get their NICs as taps');
  const why = f.tun.state === 'absent' ? '/dev/net/tun is missing (modprobe tun)' : `cannot open /dev/net/tun (${f.tun.error})`;
  if (s.networkModel === 'none') return finding('tun', req, 'optional', `${why}; not needed with runtime.internetworking_model = "none"`);
  return finding('tun', req, 'fatal', `${why}: every sandbox with a network namespace gets its NIC as a tap; or set runtime.internetworking_model = "none" (loopback only)`);
}

function commandProblem(c: CommandFacts): string {
  return c.state === 'missing' ? `${c.command} not found` : `${c.command} does not run: ${c.error}`;
}

function qemuFindings(f: HostFacts, channel: Choice<ChannelKind> | undefined): Finding[] {
  if (f.qemu.state !== 'ok')
    return [finding('qemu', 'QEMU', 'fatal', `${commandProblem(f.qemu)}: apt-get install qemu-system-x86, or set hypervisor.path`)];
  const version = finding('qemu', 'QEMU', 'ok', `QEMU ${f.qemu.version ?? '(version not recognised)'} at ${f.qemu.command}`);
  const devices = [...QEMU_DEVICES, ...(channel?.value === 'vsock' ? [QEMU_VSOCK_DEVICE] : [])];
  const missing = [...devices.filter((d) => !f.qemu.devices.includes(d)), ...QEMU_OBJECTS.filter((o) => !f.qemu.objects.includes(o))];
  const needs = missing.length
    ? finding('qemu-devices', 'QEMU devices', 'fatal', `${f.qemu.command} lacks ${missing.join(', ')}: use a QEMU built with them (Debian 12's qemu-system-x86 has all)`)
    : finding('qemu-devices', 'QEMU devices', 'ok', `has ${[...devices, ...QEMU_OBJECTS].join(', ')}`);
  return [version, needs];
}

function firmwareFinding(f: HostFacts): Finding {
  const req = 'firmware';
  if (!f.firmware) return finding('firmware', req, 'ok', 'QEMU\'s default BIOS (hypervisor.firmware = "")');
  if (f.firmware.present) return finding('firmware', req, 'ok', f.firmware.path);
  return finding('firmware', req, 'fatal', `${f.firmware.path} is missing: apt-get install qemu-system-x86 (it ships qboot.rom), or set hypervisor.firmware = "" for QEMU's default BIOS (slower boot)`);
}

function virtiofsdFinding(f: HostFacts): Finding {
  if (f.virtiofsd.state === 'ok') return finding('virtiofsd', 'virtiofsd', 'ok', `virtiofsd ${f.virtiofsd.version ?? '(version not recognised)'} at ${f.virtiofsd.command}`);
  return finding(
    'virtiofsd',
    'virtiofsd',
    'fatal',
    `${commandProblem(f.virtiofsd)}: containers' root filesystems reach the guest through it. Debian 12's qemu-system-x86 ships /usr/lib/qemu/virtiofsd (later releases: the virtiofsd package); or set hypervisor.virtio_fs_daemon`,
  );
}

function cgroupFinding(f: HostFacts): Finding {
  const req = 'cgroups';
  const limits = "container limits are enforced in the guest's own cgroup v2";
  const list = f.cgroups.controllers.length ? `, controllers ${f.cgroups.controllers.join(' ')}` : '';
  switch (f.cgroups.mode) {
    case 'v2':
      return finding('cgroups', req, 'ok', `cgroup v2${list}; ${limits}`);
    case 'hybrid':
    case 'v1':
      return finding(
        'cgroups',
        req,
        'ok',
        `cgroup v1${f.cgroups.mode === 'hybrid' ? ' and an empty v2 hierarchy (hybrid)' : ''}${list}: enough, since ${limits} and the host's hold only the shim, QEMU and virtiofsd`,
      );
    case 'none':
      return finding('cgroups', req, 'optional', `no cgroup filesystem: containerd cannot account the shim, QEMU and virtiofsd; ${limits} still`);
  }
}

function imageFinding(id: string, requirement: string, image: ImageFacts, rebuild: string, setting: string): Finding {
  const what = image.release ? `${image.path} (${image.release})` : image.path;
  if (image.size === undefined) return finding(id, requirement, 'fatal', `${image.path}: ${image.error ?? 'missing'}: ${rebuild}, or set ${setting}`);
  if (image.error) return finding(id, requirement, 'fatal', `${image.path}: ${image.error}`);
  if (id === 'guest-rootfs' && image.size % (2 * MIB) !== 0)
    return finding(id, requirement, 'fatal', `${image.path} is ${image.size} bytes, not a multiple of 2 MiB as its nvdimm needs: ${rebuild}`);
  if (image.recordError) return finding(id, requirement, 'degraded', `${image.recordError}: ${rebuild}`);
  if (!image.record)
    return finding(id, requirement, 'optional', `${what} is there, but no build record (${image.path}.key) says which inputs made it: ${rebuild} writes one`);
  const key = image.record.key;
  if (image.digestMatches === false) return finding(id, requirement, 'degraded', `${image.path} is not the image its record (key ${key}) describes: it changed after its build; ${rebuild}`);
  const c = image.current;
  if (c?.key !== undefined && c.key !== key)
    return finding(id, requirement, 'degraded', `${image.path} is stale: built from inputs with key ${key}, the checkout's give ${c.key} now; ${rebuild}`);
  if (c && c.changed.length) return finding(id, requirement, 'degraded', `${image.path} is stale: ${c.changed.join(', ')} changed since it was built (key ${key}); ${rebuild}`);
  if (c && c.missing.length) return finding(id, requirement, 'degraded', `${image.path}: its inputs ${c.missing.join(', ')} are gone from the checkout; ${rebuild}`);
  const checked = image.digestMatches ? 'matches its build record' : 'has a build record (content not verified)';
  const against = c?.error ? `; the checkout's inputs could not be compared: ${c.error}` : c ? " and the checkout's current inputs" : '';
  return finding(id, requirement, 'ok', `${what} ${checked} (key ${key})${against}`);
}

function imageFindings(f: HostFacts): Finding[] {
  const rebuild = (target: string) => (f.checkout ? `make ${target}` : 'reinstall (make install)');
  return [
    imageFinding('guest-kernel', 'guest kernel', f.kernel, rebuild('kernel'), 'hypervisor.kernel'),
    imageFinding('guest-rootfs', 'guest rootfs image', f.rootfs, rebuild('rootfs'), 'hypervisor.image'),
  ];
}

function shimFinding(f: HostFacts): Finding {
  const req = 'containerd finds the shim';
  const { found, target, runtimeRoot, run } = f.shim;
  if (!found)
    return finding('shim-on-path', req, 'fatal', `containerd-shim-kata-ts-v2 is on none of ${f.shim.searched.join(':')}: make install links it into /usr/local/bin, or put ${f.runtimeRoot}/bin on containerd's PATH`);
  if (run?.state !== 'ok') return finding('shim-on-path', req, 'fatal', `${found} does not run (${run?.error ?? 'not run'}): make install again`);
  const link = target && target !== found ? ` → ${target}` : '';
  const other = runtimeRoot && runtimeRoot !== f.runtimeRoot ? `; it is the runtime in ${runtimeRoot}, not this command's (${f.runtimeRoot}): containerd uses that one's images and configuration` : '';
  return finding('shim-on-path', req, 'ok', `${found}${link} (${run.version ?? 'version not recognised'})${other}`);
}

function socketFolderFinding(f: HostFacts): Finding {
  const req = 'shim socket folder';
  const s = f.socketFolder;
  const mode = s.mode === undefined ? '' : `mode ${s.mode.toString(8).padStart(4, '0')}, owner uid ${s.uid}`;
  switch (s.state) {
    case 'absent':
      return finding('socket-folder', req, 'ok', `${s.path} does not exist yet: the first shim makes it (mode 0700)`);
    case 'ok':
      return finding('socket-folder', req, 'ok', `${s.path} (${mode})`);
    case 'not-directory':
      return finding('socket-folder', req, 'fatal', `${s.path} is not a directory: remove it; the first shim makes the folder`);
    case 'not-writable':
      return finding('socket-folder', req, 'fatal', `${s.path} (${mode}) is not writable by uid ${f.uid}: containerd and its shims run as root`);
  }
}

function ksmFinding(f: HostFacts): Finding {
  switch (f.ksm) {
    case 'on':
      return finding('ksm', 'KSM', 'ok', "on: identical pages of QEMU's private memory are shared between sandboxes (guest RAM is shared memory for virtio-fs, which KSM does not merge)");
    case 'off':
      return finding(
        'ksm',
        'KSM',
        'optional',
        "off: echo 1 > /sys/kernel/mm/ksm/run merges identical pages of QEMU's private memory between sandboxes; guest RAM is shared memory (virtio-fs maps it), which KSM does not merge, so it saves little (nothing measurable per idle sandbox with 20 here), for some CPU and a known side channel between VMs",
      );
    case 'absent':
      return finding('ksm', 'KSM', 'optional', 'this kernel has no KSM (/sys/kernel/mm/ksm): each sandbox keeps its own pages');
  }
}

function templateFinding(f: HostFacts): Finding {
  const t = f.templates;
  if (!t.enabled) return finding('templates', 'sandbox templates', 'optional', 'off ([factory] enable_template = false): every sandbox boots cold, about twice as slow to start');
  if (t.unwritable) return finding('templates', 'sandbox templates', 'optional', `on, but ${t.unwritable}: no template can be made, so every sandbox boots cold; set [factory] template_path to a folder root can write`);
  const made = t.count === 0 ? 'none made yet' : `${t.count} made (${Math.round(t.bytes / MIB)} MB)`;
  return finding('templates', 'sandbox templates', 'ok', `on: ${made} in ${t.path}; the first sandbox of each VM shape makes its template`);
}

function slirpFinding(f: HostFacts): Finding {
  if (f.slirp4netns.state === 'ok') return finding('slirp4netns', 'slirp4netns', 'ok', `slirp4netns ${f.slirp4netns.version ?? ''}`.trim());
  return finding('slirp4netns', 'slirp4netns', 'optional', `${commandProblem(f.slirp4netns)}: apt-get install slirp4netns; only user-mode NAT (kata-ts job run --network nat) needs it`);
}

function containerdFinding(f: HostFacts): Finding {
  if (f.containerd.state === 'ok') return finding('containerd', 'containerd', 'ok', `containerd ${f.containerd.version ?? '(version not recognised)'}`);
  return finding('containerd', 'containerd', 'optional', `${commandProblem(f.containerd)}: apt-get install containerd to run containers (kata-ts job run works without it)`);
}

function toolsFinding(f: HostFacts): Finding {
  if (!f.missingTools.length) return finding('host-tools', 'host tools', 'ok', 'ip, tc, nsenter, unshare, setpriv and mount are on PATH');
  return finding('host-tools', 'host tools', 'fatal', `${f.missingTools.join(', ')} not found: the shim runs them to wire NICs and start QEMU (Debian: iproute2, util-linux, mount)`);
}

export function judgeHost(f: HostFacts, s: CheckSettings): Omit<CheckReport, 'status' | 'exitCode'> {
  const kvm = kvmFinding(f, s);
  const channel = channelFinding(f, s);
  const findings = [
    kvm.finding,
    kvmDeviceFinding(f, s),
    channel.finding,
    vhostNetFinding(f, s),
    tunFinding(f, s),
    ...qemuFindings(f, channel.channel),
    firmwareFinding(f),
    virtiofsdFinding(f),
    cgroupFinding(f),
    ...imageFindings(f),
    containerdFinding(f),
    shimFinding(f),
    socketFolderFinding(f),
    templateFinding(f),
    ksmFinding(f),
    slirpFinding(f),
    toolsFinding(f),
  ];
  if (f.uid !== 0) findings.push(finding('root', 'run as root', 'optional', `checked as uid ${f.uid}; containerd runs the shim as root, so device access may differ there`));
  return { ...(kvm.accel ? { accel: kvm.accel } : {}), ...(channel.channel ? { channel: channel.channel } : {}), findings };
}

/** The whole host's verdict: any fatal finding → cannot run (1); any degraded → degraded (2, or 1 when strict). */
export function summarise(findings: Finding[], strict: boolean): Pick<CheckReport, 'status' | 'exitCode'> {
  if (findings.some((x) => x.verdict === 'fatal')) return { status: 'cannot-run', exitCode: 1 };
  if (findings.some((x) => x.verdict === 'degraded')) return { status: 'degraded', exitCode: strict ? 1 : 2 };
  return { status: 'ready', exitCode: 0 };
}

export function checkHost(f: HostFacts, s: CheckSettings, strict = false): CheckReport {
  const judged = judgeHost(f, s);
  return { ...summarise(judged.findings, strict), ...judged };
}
