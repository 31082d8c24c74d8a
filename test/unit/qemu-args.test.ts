import { describe, expect, it } from 'vitest';
import { qemuValue, renderQemuArgs } from '../../shim/src/hypervisor/qemu-args.js';
import { guestCmdline } from '../../shim/src/sandbox/sandbox.js';
import type { VmDescription } from '../../shim/src/hypervisor/vm-description.js';

const base: VmDescription = {
  name: 'sb1',
  qemuBinary: '/usr/bin/qemu-system-x86_64',
  accel: 'tcg',
  tcgTranslationBufferMiB: 64,
  cpus: 1,
  maxCpus: 4,
  memoryMiB: 256,
  maxMemoryMiB: 4096,
  memorySlots: 2,
  firmware: '/usr/share/qemu/qboot.rom',
  kernel: { path: '/k/vmlinux', cmdline: ['console=ttyS0', 'root=/dev/pmem0'] },
  rootfsImage: { path: '/i/rootfs.img', sizeBytes: 128 * 1024 * 1024 },
  sharedFs: { socketPath: '/r/vfs.sock', tag: 'kataShared' },
  agentChannel: { kind: 'serial', socketPath: '/r/agent.sock', portName: 'agent.channel.0' },
  consoleLogPath: '/r/console.log',
  qmpSocketPath: '/r/qmp.sock',
  pidFilePath: '/r/qemu.pid',
};

describe('renderQemuArgs', () => {
  it('renders a TCG sandbox with virtio-fs and the virtio-serial agent port', () => {
    expect(renderQemuArgs(base)).toEqual([
      '-name', 'kata-ts-sb1',
      '-machine', 'q35,nvdimm=on,sata=off,smbus=off,vmport=off,graphics=off',
      '-accel', 'tcg,tb-size=64', '-cpu', 'max',
      '-smp', '1,maxcpus=4',
      '-m', '256M,slots=2,maxmem=4096M',
      '-object', 'memory-backend-memfd,id=ram0,size=256M,share=on',
      '-numa', 'node,memdev=ram0',
      '-bios', '/usr/share/qemu/qboot.rom',
      '-kernel', '/k/vmlinux',
      '-append', 'console=ttyS0 root=/dev/pmem0',
      '-object', 'memory-backend-file,id=rootfs0,mem-path=/i/rootfs.img,size=134217728,share=on,readonly=on',
      '-device', 'nvdimm,id=nv0,memdev=rootfs0,unarmed=on',
      '-chardev', 'socket,id=virtiofs0,path=/r/vfs.sock',
      '-device', 'vhost-user-fs-pci,chardev=virtiofs0,tag=kataShared,queue-size=1024',
      '-device', 'virtio-serial-pci,id=serial0',
      '-chardev', 'socket,id=agent0,path=/r/agent.sock,server=on,wait=off',
      '-device', 'virtserialport,bus=serial0.0,chardev=agent0,name=agent.channel.0',
      '-object', 'rng-random,id=rng0,filename=/dev/urandom',
      '-device', 'virtio-rng-pci,rng=rng0',
      '-device', 'virtio-balloon-pci,id=balloon0,free-page-reporting=on',
      '-chardev', 'file,id=console0,path=/r/console.log,append=on',
      '-serial', 'chardev:console0',
      '-chardev', 'socket,id=qmp0,path=/r/qmp.sock,server=on,wait=off',
      '-mon', 'chardev=qmp0,mode=control',
      '-pidfile', '/r/qemu.pid',
      '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
      '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    ]);
  });

  it('renders KVM with vhost-vsock and no shared filesystem or firmware', () => {
    const { sharedFs: _s, firmware: _f, tcgTranslationBufferMiB: _t, ...rest } = base;
    const args = renderQemuArgs({ ...rest, accel: 'kvm', agentChannel: { kind: 'vsock', guestCid: 42 } });
    expect(args.slice(4, 8)).toEqual(['-accel', 'kvm', '-cpu', 'host']);
    expect(args).toContain('vhost-vsock-pci,id=vsock0,guest-cid=42');
    expect(args.join(' ')).not.toMatch(/virtio-serial|vhost-user-fs|-bios/);
  });

  it('renders one virtio-net NIC per tap fd it is handed, with the MAC and MTU, vhost-net only when asked', () => {
    const args = renderQemuArgs({
      ...base,
      networks: [
        { tap: { fdIndex: 0 }, mac: '02:42:0a:58:00:02', mtu: 1450, vhost: false },
        { tap: { fdIndex: 1 }, mac: '02:42:0a:58:00:03', mtu: 9000, vhost: true },
      ],
    }).join(' ');
    expect(args).toContain('-netdev tap,id=net0,fd=3,vhost=off -device virtio-net-pci,netdev=net0,mac=02:42:0a:58:00:02,host_mtu=1450,romfile=');
    expect(args).toContain('-netdev tap,id=net1,fd=4,vhost=on -device virtio-net-pci,netdev=net1,mac=02:42:0a:58:00:03,host_mtu=9000,romfile=');
    expect(renderQemuArgs(base).join(' ')).not.toMatch(/netdev/);
  });

  it('renders a tap that QEMU creates by name, with a virtio-net header and no scripts, and no MTU when none is known', () => {
    const args = renderQemuArgs({ ...base, networks: [{ tap: { ifname: 'tap0_kt' }, mac: '02:6b:74:00:00:01', vhost: false }] }).join(' ');
    expect(args).toContain('-netdev tap,id=net0,ifname=tap0_kt,script=no,downscript=no,vnet_hdr=on,vhost=off -device virtio-net-pci,netdev=net0,mac=02:6b:74:00:00:01,romfile=');
  });

  it('doubles commas in paths so QEMU does not split them', () => {
    expect(qemuValue('/a,b/c')).toBe('/a,,b/c');
    const args = renderQemuArgs({ ...base, consoleLogPath: '/r,x/console.log' });
    expect(args).toContain('file,id=console0,path=/r,,x/console.log,append=on');
  });

  it('refuses a rootfs image that is not a multiple of 2 MiB', () => {
    expect(() => renderQemuArgs({ ...base, rootfsImage: { path: '/i/x.img', sizeBytes: 3 * 1024 * 1024 } })).toThrow(/multiple of 2 MiB/);
  });
});

describe('guestCmdline', () => {
  const settings = { debug: false, kernelParams: ['extra=1'] };

  it('keeps the guest kernel hardened under KVM: the speed knobs that cost it are for TCG only', () => {
    const kvm = guestCmdline('kvm', 'vsock', settings);
    for (const knob of ['mitigations=off', 'nokaslr', 'init_on_alloc=0', 'lsm=none']) expect(kvm).not.toContain(knob);
    expect(guestCmdline('tcg', 'serial', settings)).toEqual(expect.arrayContaining(['mitigations=off', 'nokaslr', 'init_on_alloc=0', 'lsm=none']));
    expect(kvm).toEqual(expect.arrayContaining(['root=/dev/pmem0', 'kata_ts.channel=vsock', 'kata_ts.accel=kvm']));
    expect(kvm.at(-1)).toBe('extra=1');
  });
});
