// What a sandbox is built from, and the defaults. The containerd shim fills
// these from its configuration file; the demo and tests from the build folder.
import type { AccelSetting, ChannelSetting } from '../hypervisor/accel.js';

export interface SandboxSettings {
  qemuBinary: string;
  virtiofsdBinary: string;
  /** Firmware; qboot boots the PVH kernel fastest. Empty = QEMU's default BIOS. */
  firmware: string;
  kernelPath: string;
  imagePath: string;
  /** Extra kernel command-line words. */
  kernelParams: string[];
  accel: AccelSetting;
  agentChannel: ChannelSetting;
  cpus: number;
  maxCpus: number;
  memoryMiB: number;
  maxMemoryMiB: number;
  /** From QEMU start until the agent must answer. */
  bootTimeoutMs: number;
  /** Deadline of an ordinary agent call. */
  callTimeoutMs: number;
  /** How long a running guest may leave the agent's liveness checks unanswered before its VM is killed; 0: never. */
  hungTimeoutMs: number;
  /** How long the guest gets to power off before QEMU is quit and killed. */
  shutdownTimeoutMs: number;
  /** Per-sandbox directories live below this. */
  runRoot: string;
  virtiofsCache: 'auto' | 'always' | 'none';
  /** TCG only: QEMU's translated-code buffer in MiB; it is most of QEMU's memory under TCG. */
  tcgTranslationBufferMiB: number;
  debug: boolean;
  /** How a pod's CNI interfaces reach the VM: mirrored to a tap with tc, or not at all (loopback only). */
  networkModel: 'tcfilter' | 'none';
  /** Never use vhost-net, even where /dev/vhost-net exists. */
  disableVhostNet: boolean;
  /** A spec on the host's network: refused, or run on an isolated guest network (logged). */
  hostNetwork: 'refuse' | 'isolate';
  /**
   * A task whose network namespace nobody fills (ctr run without --cni, a CI job) gets outbound
   * connections through user-mode NAT (slirp4netns), never to the host's loopback.
   */
  userNat: boolean;
  /** How long a process's output may still arrive after its exit before it is cut. */
  outputFlushMs: number;
  /**
   * `kata-ts exec` may run a shell in the guest outside every container: whoever can reach the
   * shim's socket (root) gets root in the guest, past every container's confinement.
   */
  debugConsoleEnabled: boolean;
  /** Restore the VM from a template of its shape (made on first use) instead of booting it. */
  templateEnabled: boolean;
  /** Where templates are kept, one folder per key. */
  templatePath: string;
}

export const DEFAULT_SETTINGS: Omit<SandboxSettings, 'kernelPath' | 'imagePath'> = {
  qemuBinary: '/usr/bin/qemu-system-x86_64',
  virtiofsdBinary: '/usr/lib/qemu/virtiofsd',
  firmware: '/usr/share/qemu/qboot.rom',
  kernelParams: [],
  accel: 'auto',
  agentChannel: 'auto',
  cpus: 1,
  maxCpus: 4,
  memoryMiB: 256,
  maxMemoryMiB: 4096,
  bootTimeoutMs: 60_000,
  callTimeoutMs: 30_000,
  hungTimeoutMs: 30_000,
  shutdownTimeoutMs: 3_000,
  runRoot: '/run/kata-ts',
  virtiofsCache: 'auto',
  tcgTranslationBufferMiB: 128,
  debug: false,
  networkModel: 'tcfilter',
  disableVhostNet: false,
  hostNetwork: 'refuse',
  userNat: false,
  outputFlushMs: 2000,
  debugConsoleEnabled: false,
  templateEnabled: true,
  templatePath: '/var/cache/kata-ts/templates',
};
