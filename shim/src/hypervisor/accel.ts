// Chooses how QEMU runs the guest (KVM or TCG) and how the host reaches the
// agent (vhost-vsock or virtio-serial). Pure decisions over a probe of the
// host, so tests cover every branch; the choice and its reason are returned
// for the log, never made silently.
import { accessSync, constants, existsSync } from 'node:fs';
import type { Accel } from './vm-description.js';

export type AccelSetting = Accel | 'auto';
export type ChannelSetting = 'vsock' | 'serial' | 'auto';
export type ChannelKind = 'vsock' | 'serial';

export interface HostProbe {
  /** /dev/kvm exists and can be opened read-write. */
  kvmDevice: boolean;
  /** Loaded kernel modules whose names start with kvm. */
  kvmModules: string[];
  /** /dev/vhost-vsock exists and can be opened read-write. */
  vhostVsock: boolean;
}

export interface Choice<T> {
  value: T;
  reason: string;
}

export class HostCapabilityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostCapabilityError';
  }
}

/** Whether KVM here can run a stock guest kernel. PVM (pagetable-based) KVM cannot: our guest hangs under it. */
export function kvmUsability(probe: HostProbe): { usable: boolean; reason: string } {
  if (!probe.kvmDevice) return { usable: false, reason: '/dev/kvm is missing or not accessible' };
  if (probe.kvmModules.includes('kvm_intel') || probe.kvmModules.includes('kvm_amd'))
    return { usable: true, reason: `/dev/kvm is backed by ${probe.kvmModules.includes('kvm_intel') ? 'kvm_intel' : 'kvm_amd'}` };
  if (probe.kvmModules.includes('kvm_pvm'))
    return { usable: false, reason: '/dev/kvm is PVM (kvm_pvm), which cannot run a stock guest kernel' };
  return { usable: false, reason: `/dev/kvm has no hardware backend module (loaded: ${probe.kvmModules.join(', ') || 'none'})` };
}

export function chooseAccel(setting: AccelSetting, probe: HostProbe): Choice<Accel> {
  const kvm = kvmUsability(probe);
  switch (setting) {
    case 'kvm':
      if (!kvm.usable) throw new HostCapabilityError(`accel = "kvm" was asked for, but ${kvm.reason}`);
      return { value: 'kvm', reason: `configured; ${kvm.reason}` };
    case 'tcg':
      return { value: 'tcg', reason: 'configured (software emulation; slow)' };
    case 'auto':
      return kvm.usable
        ? { value: 'kvm', reason: kvm.reason }
        : { value: 'tcg', reason: `falling back to TCG software emulation (much slower): ${kvm.reason}` };
  }
}

export function chooseChannel(setting: ChannelSetting, probe: HostProbe): Choice<ChannelKind> {
  switch (setting) {
    case 'vsock':
      if (!probe.vhostVsock) throw new HostCapabilityError('agent_channel = "vsock" was asked for, but /dev/vhost-vsock is missing (modprobe vhost_vsock)');
      return { value: 'vsock', reason: 'configured' };
    case 'serial':
      return { value: 'serial', reason: 'configured' };
    case 'auto':
      return probe.vhostVsock
        ? { value: 'vsock', reason: '/dev/vhost-vsock is available' }
        : { value: 'serial', reason: '/dev/vhost-vsock is missing; using the virtio-serial port' };
  }
}

function accessible(path: string): boolean {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export function probeHost(): HostProbe {
  const modules = ['kvm', 'kvm_intel', 'kvm_amd', 'kvm_pvm'].filter((m) => existsSync(`/sys/module/${m}`));
  return { kvmDevice: accessible('/dev/kvm'), kvmModules: modules, vhostVsock: accessible('/dev/vhost-vsock') };
}
