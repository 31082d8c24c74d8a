// The VM a sandbox boots, as a pure function of its settings and of what was
// chosen or found on the host (accel, channel, image size, NICs). Sandbox.start
// launches it; `kata-ts vm` shows the same description as argv or libvirt XML.
import { join } from 'node:path';
import type { ChannelKind } from '../hypervisor/accel.js';
import { FAST_BOOT_CMDLINE, ROOTFS_CMDLINE, TCG_ONLY_CMDLINE } from '../hypervisor/qemu-args.js';
import type { Accel, AgentChannel, NetworkDevice, VmDescription } from '../hypervisor/vm-description.js';
import { sandboxDirs } from './sandbox-dirs.js';
import type { SandboxSettings } from './settings.js';

export const SHARED_FS_TAG = 'kataShared';
export const SERIAL_PORT_NAME = 'agent.channel.0';
/** The agent's unix socket in the VM folder: QEMU's serial port end, or the vsock proxy's. */
export const AGENT_SOCKET_FILE = 'agent.sock';

/** The NICs a sandbox's VM gets. */
export type PlannedNetwork =
  /** Taps made beside CNI's interfaces; their fds are handed to the VMM in this order. */
  | { kind: 'passed-taps'; taps: { name: string; mac: string; mtu: number }[]; vhost: boolean }
  /** One tap that the VMM makes in a network namespace of its own, for a network that comes after create. */
  | { kind: 'own-namespace'; tap: string; mac: string; vhost: boolean };

export type PlanSettings = Pick<
  SandboxSettings,
  | 'qemuBinary'
  | 'firmware'
  | 'kernelPath'
  | 'imagePath'
  | 'kernelParams'
  | 'cpus'
  | 'maxCpus'
  | 'memoryMiB'
  | 'maxMemoryMiB'
  | 'runRoot'
  | 'tcgTranslationBufferMiB'
  | 'debug'
>;

export interface VmPlanInput {
  /** The sandbox's name on this host: names QEMU and the VM folder. */
  name: string;
  settings: PlanSettings;
  accel: Accel;
  channel: ChannelKind;
  /** The guest's vsock context id (vsock only); random per sandbox, so the caller draws it. */
  guestCid: number;
  /** Size of the rootfs image in bytes, as the caller found it. */
  imageSizeBytes: number;
  network?: PlannedNetwork;
  dieWithOwner?: boolean;
}

/** The guest kernel's command line: the speed knobs that cost hardening only under TCG. */
export function guestCmdline(accel: Accel, channel: string, settings: Pick<SandboxSettings, 'debug' | 'kernelParams'>): string[] {
  return [
    ...FAST_BOOT_CMDLINE,
    ...(accel === 'tcg' ? TCG_ONLY_CMDLINE : []),
    ...ROOTFS_CMDLINE,
    `kata_ts.channel=${channel}`,
    `kata_ts.accel=${accel}`,
    ...(settings.debug ? ['kata_ts.log=debug'] : []),
    ...settings.kernelParams,
  ];
}

function networkDevices(n: PlannedNetwork): NetworkDevice[] {
  if (n.kind === 'own-namespace') return [{ tap: { ifname: n.tap }, mac: n.mac, vhost: n.vhost }];
  return n.taps.map((t, fdIndex) => ({ tap: { fdIndex, name: t.name }, mac: t.mac, mtu: t.mtu, vhost: n.vhost }));
}

export function planVm(i: VmPlanInput): VmDescription {
  const { settings, accel } = i;
  const { vmDir } = sandboxDirs(settings.runRoot, i.name);
  const agentChannel: AgentChannel =
    i.channel === 'vsock'
      ? { kind: 'vsock', guestCid: i.guestCid }
      : { kind: 'serial', socketPath: join(vmDir, AGENT_SOCKET_FILE), portName: SERIAL_PORT_NAME };
  return {
    name: i.name,
    qemuBinary: settings.qemuBinary,
    accel,
    ...(accel === 'tcg' ? { tcgTranslationBufferMiB: settings.tcgTranslationBufferMiB } : {}),
    cpus: settings.cpus,
    maxCpus: Math.max(settings.maxCpus, settings.cpus),
    memoryMiB: settings.memoryMiB,
    maxMemoryMiB: Math.max(settings.maxMemoryMiB, settings.memoryMiB),
    memorySlots: 2,
    ...(settings.firmware ? { firmware: settings.firmware } : {}),
    kernel: { path: settings.kernelPath, cmdline: guestCmdline(accel, i.channel, settings) },
    rootfsImage: { path: settings.imagePath, sizeBytes: i.imageSizeBytes },
    sharedFs: { socketPath: join(vmDir, 'virtiofsd.sock'), tag: SHARED_FS_TAG },
    agentChannel,
    ...(i.network ? { networks: networkDevices(i.network) } : {}),
    ...(i.network?.kind === 'own-namespace' ? { ownNetworkNamespace: true } : {}),
    consoleLogPath: join(vmDir, 'console.log'),
    qmpSocketPath: join(vmDir, 'qmp.sock'),
    pidFilePath: join(vmDir, 'qemu.pid'),
    ...(i.dieWithOwner ? { dieWithOwner: true } : {}),
  };
}
