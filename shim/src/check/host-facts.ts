// Reads what this host offers kata-ts: CPU flags and KVM modules, device
// nodes (opened, not just looked at), QEMU and its devices, virtiofsd, the
// cgroup layout, the guest images, where containerd would find the shim, the
// shim socket folder, KSM and the helper programs. Only facts here: what they
// mean is verdicts.ts's job, so tests can fake every one of them.
import { execFile } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, openSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { findExecutable, pathDirs } from '../../../common/find-executable.js';
import { promisify } from 'node:util';
import { SOCKET_ROOT } from '../containerd/address.js';
import { probeHost } from '../hypervisor/accel.js';
import { VHOST_NET_DEVICE } from '../network/pod-network.js';
import { USER_NAT_BINARY } from '../network/user-nat.js';
import type { SandboxSettings } from '../sandbox/settings.js';
import { inspectKernel, inspectRootfs, type ImageFacts } from './image-record.js';

const run = promisify(execFile);
const COMMAND_TIMEOUT_MS = 10_000;

export const SHIM_BINARY = 'containerd-shim-kata-ts-v2';
/** What the shim runs besides QEMU: ip and tc wire taps, nsenter reads a pod's netns, unshare and setpriv start QEMU, mount shares root filesystems. */
export const HOST_TOOLS = ['ip', 'tc', 'nsenter', 'unshare', 'setpriv', 'mount'] as const;
/** systemd's default PATH, which a containerd started by systemd has. */
const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export interface DeviceFacts {
  path: string;
  /** ok: opened read-write; absent: no such node; unusable: there, but opening it failed (`error`). */
  state: 'ok' | 'absent' | 'unusable';
  error?: string;
}

export interface CommandFacts {
  /** The configured path, or a name looked up on PATH. */
  command: string;
  state: 'ok' | 'missing' | 'failed';
  version?: string;
  error?: string;
}

export interface QemuFacts extends CommandFacts {
  /** Device and object type names QEMU lists (`-device help`, `-object help`); empty unless it ran. */
  devices: string[];
  objects: string[];
}

export interface ShimLookup {
  /** The folders looked in, in containerd's order as far as it can be known here. */
  searched: string[];
  /** The first containerd-shim-kata-ts-v2 found, its target after symlinks, and the runtime folder it belongs to. */
  found?: string;
  target?: string;
  runtimeRoot?: string;
  /** What `containerd-shim-kata-ts-v2 -v` printed, or why it did not run. */
  run?: CommandFacts;
}

export interface SocketFolderFacts {
  path: string;
  state: 'absent' | 'ok' | 'not-directory' | 'not-writable';
  mode?: number;
  uid?: number;
}

export type CgroupMode = 'v2' | 'hybrid' | 'v1' | 'none';

export interface HostFacts {
  uid: number;
  /** The virtualisation flags of /proc/cpuinfo: vmx, svm, hypervisor (this host is itself a VM). */
  cpuFlags: string[];
  /** Loaded kvm* modules (/sys/module). */
  kvmModules: string[];
  kvm: DeviceFacts;
  vhostVsock: DeviceFacts;
  vhostNet: DeviceFacts;
  tun: DeviceFacts;
  qemu: QemuFacts;
  virtiofsd: CommandFacts;
  containerd: CommandFacts;
  slirp4netns: CommandFacts;
  /** The configured firmware; undefined when none is (QEMU's default BIOS). */
  firmware?: { path: string; present: boolean };
  cgroups: { mode: CgroupMode; controllers: string[] };
  kernel: ImageFacts;
  rootfs: ImageFacts;
  shim: ShimLookup;
  socketFolder: SocketFolderFacts;
  /** Sandbox templates: whether they are on, and whether their folder can be written. */
  templates: TemplateFacts;
  /** /sys/kernel/mm/ksm/run: 1 on, 0 off (2 unmerges: off too). */
  ksm: 'on' | 'off' | 'absent';
  /** HOST_TOOLS not found on the shim's likely PATH. */
  missingTools: string[];
  /** The runtime folder this command runs from, and the checkout above it if it is a checkout's build/. */
  runtimeRoot: string;
  checkout?: string;
}

export type FactSettings = Pick<SandboxSettings, 'qemuBinary' | 'virtiofsdBinary' | 'firmware' | 'kernelPath' | 'imagePath' | 'templateEnabled' | 'templatePath'>;

export interface TemplateFacts {
  enabled: boolean;
  path: string;
  /** The folder, or the nearest folder above it that exists (it is made at first use), refuses writes: why. */
  unwritable?: string;
  count: number;
  bytes: number;
}

/** Templates made so far and their size on disk; and whether a new one could be written. */
export function templateFacts(enabled: boolean, path: string): TemplateFacts {
  let existing = path;
  while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
  let unwritable: string | undefined;
  try {
    accessSync(existing, constants.W_OK);
  } catch (err) {
    unwritable = `${existing}: ${(err as Error).message}`;
  }
  let count = 0;
  let bytes = 0;
  for (const key of readdirSafe(path).filter((e) => /^[0-9a-f]{16}$/.test(e))) {
    count++;
    for (const file of readdirSafe(join(path, key))) bytes += (statSync(join(path, key, file), { throwIfNoEntry: false })?.blocks ?? 0) * 512;
  }
  return { enabled, path, ...(unwritable ? { unwritable } : {}), count, bytes };
}

const readdirSafe = (dir: string): string[] => {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
};


/** The virtualisation flags of the first CPU in /proc/cpuinfo. */
export function cpuVirtFlags(cpuinfo: string): string[] {
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.trim().split(/\s+/) ?? [];
  return ['vmx', 'svm', 'hypervisor'].filter((f) => flags.includes(f));
}

/** Type names from QEMU's `-device help` (`name "nvdimm", desc …`). */
export function parseDeviceHelp(text: string): string[] {
  return [...text.matchAll(/^name "([^"]+)"/gm)].map((m) => m[1]!);
}

/** Type names from QEMU's `-object help` (one indented name a line). */
export function parseObjectHelp(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => /^\s+\S+$/.test(l))
    .map((l) => l.trim());
}

/** "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)" from `qemu --version`, `virtiofsd --version`, `slirp4netns --version`. */
export function versionAfterWord(text: string): string | undefined {
  return /\bversion (\S+(?: \([^)]*\))?)/.exec(text)?.[1];
}

/** "1.6.20~ds1" from `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3`. */
export function containerdVersion(text: string): string | undefined {
  return /^containerd \S+ (\S+)/m.exec(text)?.[1];
}

function openDevice(path: string): DeviceFacts {
  try {
    closeSync(openSync(path, 'r+'));
    return { path, state: 'ok' };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === 'ENOENT' ? { path, state: 'absent' } : { path, state: 'unusable', error: e.code ?? e.message };
  }
}

/** Runs `command args` with a deadline; `parse` takes the version from its output. */
export async function probeCommand(command: string, args: string[], parse: (out: string) => string | undefined): Promise<CommandFacts & { output?: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { timeout: COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 8 << 20 });
    const output = `${stdout}${stderr}`;
    const version = parse(output);
    return { command, state: 'ok', output, ...(version ? { version } : {}) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { killed?: boolean; stderr?: string };
    if (e.code === 'ENOENT') return { command, state: 'missing', error: 'not found' };
    if (e.code === 'EACCES') return { command, state: 'failed', error: 'not executable' };
    if (e.killed) return { command, state: 'failed', error: `gave no answer within ${COMMAND_TIMEOUT_MS / 1000} s` };
    return { command, state: 'failed', error: e.stderr?.trim().split('\n').pop() || e.message };
  }
}

const strip = ({ output: _, ...facts }: CommandFacts & { output?: string }): CommandFacts => facts;

async function probeQemu(binary: string): Promise<QemuFacts> {
  const [version, devices, objects] = await Promise.all([
    probeCommand(binary, ['--version'], versionAfterWord),
    probeCommand(binary, ['-device', 'help'], () => undefined),
    probeCommand(binary, ['-object', 'help'], () => undefined),
  ]);
  return { ...strip(version), devices: parseDeviceHelp(devices.output ?? ''), objects: parseObjectHelp(objects.output ?? '') };
}

const isFile = (path: string) => statSync(path, { throwIfNoEntry: false })?.isFile() ?? false;

/** The folders a shim's name is looked up in: this command's PATH, systemd's default one, and containerd's own folder. */
export function shimSearchPath(envPath: string | undefined, containerdDir: string | undefined): string[] {
  const dirs = [...pathDirs(envPath), ...SYSTEM_PATH, ...(containerdDir ? [containerdDir] : [])];
  return [...new Set(dirs)];
}

async function lookUpShim(dirs: string[]): Promise<ShimLookup> {
  const found = findExecutable(SHIM_BINARY, dirs);
  if (!found) return { searched: dirs };
  let target = found;
  try {
    target = realpathSync(found);
  } catch {
    // a dangling link: running it says so
  }
  const runtimeRoot = basename(dirname(target)) === 'bin' ? dirname(dirname(target)) : undefined;
  const ran = strip(await probeCommand(found, ['-v'], (out) => out.trim().split('\n')[0]?.replace(/^containerd-shim-kata-ts-v2 /, '')));
  return { searched: dirs, found, target, ...(runtimeRoot ? { runtimeRoot } : {}), run: ran };
}

function socketFolder(path: string): SocketFolderFacts {
  let st;
  try {
    st = statSync(path);
  } catch {
    return { path, state: 'absent' };
  }
  const facts = { path, mode: st.mode & 0o7777, uid: st.uid };
  if (!st.isDirectory()) return { ...facts, state: 'not-directory' };
  try {
    accessSync(path, constants.W_OK | constants.X_OK);
  } catch {
    return { ...facts, state: 'not-writable' };
  }
  return { ...facts, state: 'ok' };
}

const readText = (path: string) => readFile(path, 'utf8').catch(() => undefined);

async function cgroups(): Promise<HostFacts['cgroups']> {
  const words = (text: string | undefined) => text?.trim().split(/\s+/).filter(Boolean) ?? [];
  const unified = await readText('/sys/fs/cgroup/cgroup.controllers');
  if (unified !== undefined) return { mode: 'v2', controllers: words(unified) };
  // v1 hierarchies are enabled in /proc/cgroups; a hybrid host adds a v2 one under unified/.
  const v1 = (await readText('/proc/cgroups'))?.split('\n').filter((l) => /^\w+\s+\d+\s+\d+\s+1$/.test(l)).map((l) => l.split(/\s+/)[0]!) ?? [];
  const hybrid = await readText('/sys/fs/cgroup/unified/cgroup.controllers');
  if (hybrid !== undefined) return { mode: 'hybrid', controllers: v1 };
  return v1.length ? { mode: 'v1', controllers: v1 } : { mode: 'none', controllers: [] };
}

async function ksm(): Promise<HostFacts['ksm']> {
  const text = await readText('/sys/kernel/mm/ksm/run');
  return text === undefined ? 'absent' : text.trim() === '1' ? 'on' : 'off';
}

/** Where the checkout is, when the runtime folder is a checkout's build/. */
export function checkoutOf(runtimeRoot: string): string | undefined {
  const above = dirname(runtimeRoot);
  return basename(runtimeRoot) === 'build' && isFile(join(above, 'images/kernel/build.sh')) ? above : undefined;
}

/** Everything check judges, read from this host; the images are hashed (about half a second). */
export async function gatherHostFacts(settings: FactSettings, opts: { runtimeRoot: string }): Promise<HostFacts> {
  const checkout = checkoutOf(opts.runtimeRoot);
  const [qemu, virtiofsd, containerd, slirp4netns, kernel, rootfs, cg, ksmState, cpuinfo] = await Promise.all([
    probeQemu(settings.qemuBinary),
    probeCommand(settings.virtiofsdBinary, ['--version'], versionAfterWord).then(strip),
    probeCommand('containerd', ['--version'], containerdVersion).then(strip),
    probeCommand(USER_NAT_BINARY, ['--version'], versionAfterWord).then(strip),
    inspectKernel(settings.kernelPath, checkout, true),
    inspectRootfs(settings.imagePath, checkout, true),
    cgroups(),
    ksm(),
    readText('/proc/cpuinfo'),
  ]);
  const containerdPath = findExecutable('containerd', shimSearchPath(process.env.PATH, undefined));
  const dirs = shimSearchPath(process.env.PATH, containerdPath ? dirname(realpathSync(containerdPath)) : undefined);
  return {
    uid: process.getuid?.() ?? -1,
    cpuFlags: cpuVirtFlags(cpuinfo ?? ''),
    kvmModules: probeHost().kvmModules,
    kvm: openDevice('/dev/kvm'),
    vhostVsock: openDevice('/dev/vhost-vsock'),
    vhostNet: openDevice(VHOST_NET_DEVICE),
    tun: openDevice('/dev/net/tun'),
    qemu,
    virtiofsd,
    containerd,
    slirp4netns,
    ...(settings.firmware ? { firmware: { path: settings.firmware, present: isFile(settings.firmware) } } : {}),
    cgroups: cg,
    kernel,
    rootfs,
    shim: await lookUpShim(dirs),
    socketFolder: socketFolder(SOCKET_ROOT),
    templates: templateFacts(settings.templateEnabled, settings.templatePath),
    ksm: ksmState,
    missingTools: HOST_TOOLS.filter((t) => !findExecutable(t, dirs)),
    runtimeRoot: opts.runtimeRoot,
    ...(checkout ? { checkout } : {}),
  };
}
