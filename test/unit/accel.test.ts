import { describe, expect, it } from 'vitest';
import { chooseAccel, chooseChannel, HostCapabilityError, type HostProbe } from '../../shim/src/hypervisor/accel.js';

const pvm: HostProbe = { kvmDevice: true, kvmModules: ['kvm', 'kvm_pvm'], vhostVsock: false };
const intel: HostProbe = { kvmDevice: true, kvmModules: ['kvm', 'kvm_intel'], vhostVsock: true };
const none: HostProbe = { kvmDevice: false, kvmModules: [], vhostVsock: false };

describe('chooseAccel', () => {
  it('auto picks KVM on a hardware-backed /dev/kvm', () => {
    expect(chooseAccel('auto', intel)).toEqual({ value: 'kvm', reason: '/dev/kvm is backed by kvm_intel' });
  });
  it('auto falls back to TCG under PVM and says why', () => {
    const c = chooseAccel('auto', pvm);
    expect(c.value).toBe('tcg');
    expect(c.reason).toMatch(/PVM/);
  });
  it('auto falls back to TCG without /dev/kvm', () => {
    expect(chooseAccel('auto', none).reason).toMatch(/missing/);
  });
  it('kvm fails loudly where KVM cannot run the guest', () => {
    expect(() => chooseAccel('kvm', pvm)).toThrow(HostCapabilityError);
    expect(() => chooseAccel('kvm', none)).toThrow(/\/dev\/kvm is missing/);
  });
  it('tcg is always possible', () => {
    expect(chooseAccel('tcg', intel).value).toBe('tcg');
  });
});

describe('chooseChannel', () => {
  it('auto prefers vhost-vsock and falls back to virtio-serial', () => {
    expect(chooseChannel('auto', intel).value).toBe('vsock');
    expect(chooseChannel('auto', pvm)).toEqual({ value: 'serial', reason: '/dev/vhost-vsock is missing; using the virtio-serial port' });
  });
  it('vsock fails loudly without /dev/vhost-vsock', () => {
    expect(() => chooseChannel('vsock', pvm)).toThrow(/vhost-vsock/);
  });
  it('serial is always possible', () => {
    expect(chooseChannel('serial', intel).value).toBe('serial');
  });
});
