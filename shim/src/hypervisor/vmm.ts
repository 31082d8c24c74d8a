// The port between a sandbox and the VM monitor that runs its guest. QEMU
// (vm.ts) implements it today; device hotplug and another VMM come in behind
// the same interface, so the sandbox never speaks QEMU.
import type { Logger } from '../../../common/log.js';
import type { ExitStatus } from './child.js';
import type { VmDescription } from './vm-description.js';
import type { VirtiofsdOptions } from './virtiofsd.js';

export interface VmLaunchOptions {
  description: VmDescription;
  /** Directory holding the VM's sockets and files; created here, removed on stop. */
  runDir: string;
  virtiofsd?: Omit<VirtiofsdOptions, 'socketPath'> & { socketPath?: string };
  /** fds the VMM inherits, in order (the description's networks name them by index). */
  passFds?: readonly number[];
  log: Logger;
}

export interface StopOptions {
  /**
   * Asks the guest to stop its work and flush its filesystems (for example through its agent);
   * awaited up to gracefulMs. Once it answers, or powers off by itself, the VM is quit.
   */
  graceful?: () => Promise<unknown>;
  gracefulMs: number;
}

/** A host process that runs part of a VM. */
export interface VmmProcess {
  role: 'vmm' | 'virtiofsd';
  pid: number;
}

export interface Vmm {
  readonly name: string;
  /** The VM monitor's own process: what containerd sees as a sandbox's pid. */
  readonly pid: number | undefined;
  /** performance.now() when the VM was started: the zero of the boot timeline. */
  readonly spawnedAt: number;
  /** The VM's own folder of sockets and files, gone after stop. */
  readonly runDir: string;
  /** Resolves when the VM monitor has exited, for whatever reason. */
  readonly exited: Promise<ExitStatus>;
  /** Every host process that runs this VM, for accounting and leak checks. */
  processes(): VmmProcess[];
  /** What the VM monitor (and its helpers) said on the way out: explains an early exit. */
  stderr(): string;
  /** Graceful stop within a deadline, then a forced one; removes everything the VM had on the host. */
  stop(o: StopOptions): Promise<void>;
}

export type LaunchVmm = (o: VmLaunchOptions) => Promise<Vmm>;
