// Renders a VmDescription into QEMU's argv. Pure; golden tests pin the output.
import type { AgentChannel, VmDescription } from './vm-description.js';

const MIB = 1024 * 1024;

/** Quotes a value for QEMU's comma-separated option syntax (a comma is doubled). */
export function qemuValue(value: string): string {
  return value.replaceAll(',', ',,');
}

function machineArgs(d: VmDescription): string[] {
  // nvdimm needs q35; the rest trims devices a micro-VM never uses.
  const machine = ['-machine', 'q35,nvdimm=on,sata=off,smbus=off,vmport=off,graphics=off'];
  const accel =
    d.accel === 'tcg'
      ? ['-accel', d.tcgTranslationBufferMiB ? `tcg,tb-size=${d.tcgTranslationBufferMiB}` : 'tcg', '-cpu', 'max']
      : ['-accel', 'kvm', '-cpu', 'host'];
  return [...machine, ...accel];
}

function memoryArgs(d: VmDescription): string[] {
  return [
    '-smp',
    `${d.cpus},maxcpus=${d.maxCpus}`,
    '-m',
    `${d.memoryMiB}M,slots=${d.memorySlots},maxmem=${d.maxMemoryMiB}M`,
    // virtio-fs needs guest RAM that virtiofsd can map: a shared memfd (or file) bound to the NUMA node.
    '-object',
    ramBackend(d),
    '-numa',
    'node,memdev=ram0',
  ];
}

function ramBackend(d: VmDescription): string {
  const common = `id=ram0,size=${d.memoryMiB}M,share=on`;
  if (!d.ramFile) return `memory-backend-memfd,${common}`;
  const path = 'path' in d.ramFile ? d.ramFile.path : `/proc/self/fd/${PASSED_FD_BASE + d.ramFile.fdIndex}`;
  return `memory-backend-file,${common},mem-path=${qemuValue(path)}`;
}

/** Root ports for hot-plug; the same in a template and its clones, so every device keeps its PCI address. */
function hotplugPortArgs(d: VmDescription): string[] {
  return Array.from({ length: d.hotplugPorts ?? 0 }, (_, i) => ['-device', `pcie-root-port,id=rp${i},bus=pcie.0,chassis=${i + 1}`]).flat();
}

function bootArgs(d: VmDescription): string[] {
  return [
    ...(d.firmware ? ['-bios', d.firmware] : []),
    '-kernel',
    d.kernel.path,
    '-append',
    d.kernel.cmdline.join(' '),
  ];
}

function rootfsArgs(d: VmDescription): string[] {
  if (d.rootfsImage.sizeBytes % (2 * MIB) !== 0)
    throw new Error(`rootfs image ${d.rootfsImage.path} is ${d.rootfsImage.sizeBytes} bytes; an fsdax nvdimm needs a multiple of 2 MiB`);
  return [
    '-object',
    `memory-backend-file,id=rootfs0,mem-path=${qemuValue(d.rootfsImage.path)},size=${d.rootfsImage.sizeBytes},share=on,readonly=on`,
    // A read-only backend must be unarmed.
    '-device',
    'nvdimm,id=nv0,memdev=rootfs0,unarmed=on',
  ];
}

function sharedFsArgs(d: VmDescription): string[] {
  if (!d.sharedFs || d.lateDevices) return [];
  return [
    '-chardev',
    `socket,id=virtiofs0,path=${qemuValue(d.sharedFs.socketPath)}`,
    '-device',
    `vhost-user-fs-pci,chardev=virtiofs0,tag=${qemuValue(d.sharedFs.tag)},queue-size=1024`,
  ];
}

/** The fd number a passed fd has in QEMU's process: after stdin, stdout and stderr. */
export const PASSED_FD_BASE = 3;

function networkArgs(d: VmDescription): string[] {
  if (d.lateDevices) return [];
  return (d.networks ?? []).flatMap((n, i) => {
    const tap = 'fdIndex' in n.tap ? `fd=${PASSED_FD_BASE + n.tap.fdIndex}` : `ifname=${qemuValue(n.tap.ifname)},script=no,downscript=no,vnet_hdr=on`;
    const mtu = n.mtu === undefined ? '' : `,host_mtu=${n.mtu}`;
    return [
      '-netdev',
      `tap,id=net${i},${tap},vhost=${n.vhost ? 'on' : 'off'}`,
      // No option ROM: nothing boots from the network, and loading it costs boot time.
      '-device',
      `virtio-net-pci,netdev=net${i},mac=${n.mac}${mtu},romfile=`,
    ];
  });
}

function channelArgs(c: AgentChannel): string[] {
  if (c.kind === 'vsock') return ['-device', `vhost-vsock-pci,id=vsock0,guest-cid=${c.guestCid}`];
  return [
    '-device',
    'virtio-serial-pci,id=serial0',
    '-chardev',
    `socket,id=agent0,path=${qemuValue(c.socketPath)},server=on,wait=off`,
    '-device',
    `virtserialport,bus=serial0.0,chardev=agent0,name=${qemuValue(c.portName)}`,
  ];
}

/** The QMP socket kata-ts controls the VM through. */
export function qmpArgs(d: VmDescription): string[] {
  return ['-chardev', `socket,id=qmp0,path=${qemuValue(d.qmpSocketPath)},server=on,wait=off`, '-mon', 'chardev=qmp0,mode=control'];
}

export function renderQemuArgs(d: VmDescription): string[] {
  return [
    '-name',
    `kata-ts-${qemuValue(d.name)}`,
    ...machineArgs(d),
    ...memoryArgs(d),
    ...bootArgs(d),
    ...rootfsArgs(d),
    ...hotplugPortArgs(d),
    ...sharedFsArgs(d),
    ...networkArgs(d),
    ...channelArgs(d.agentChannel),
    '-object',
    'rng-random,id=rng0,filename=/dev/urandom',
    '-device',
    'virtio-rng-pci,rng=rng0',
    // Free page reporting: QEMU discards the guest RAM pages the guest reports free.
    '-device',
    'virtio-balloon-pci,id=balloon0,free-page-reporting=on',
    '-chardev',
    // append=on: the shim keeps the file bounded by cutting it to its newest part (console-cap.ts).
    `file,id=console0,path=${qemuValue(d.consoleLogPath)},append=on`,
    '-serial',
    'chardev:console0',
    ...qmpArgs(d),
    '-pidfile',
    d.pidFilePath,
    ...(d.incoming ? ['-incoming', 'defer'] : []),
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-sandbox',
    'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
  ];
}

export interface QmpCommand {
  execute: string;
  arguments: Record<string, unknown>;
}

/**
 * The QMP commands that add a restored VM's late devices, in order: the share on rp0, then each
 * NIC on the next port, as the command line would have them.
 */
export function lateDeviceCommands(d: VmDescription): QmpCommand[] {
  if (!d.lateDevices) return [];
  const networks = d.networks ?? [];
  const needed = (d.sharedFs ? 1 : 0) + networks.length;
  if (needed > (d.hotplugPorts ?? 0)) throw new Error(`${needed} late devices need as many root ports; the VM has ${d.hotplugPorts ?? 0}`);
  const commands: QmpCommand[] = [];
  if (d.sharedFs) {
    commands.push(
      { execute: 'chardev-add', arguments: { id: 'virtiofs0', backend: { type: 'socket', data: { addr: { type: 'unix', data: { path: d.sharedFs.socketPath } }, server: false } } } },
      { execute: 'device_add', arguments: { driver: 'vhost-user-fs-pci', id: 'fs0', bus: 'rp0', chardev: 'virtiofs0', tag: d.sharedFs.tag, 'queue-size': 1024 } },
    );
  }
  const firstPort = d.sharedFs ? 1 : 0;
  networks.forEach((n, i) => {
    const tap = 'fdIndex' in n.tap ? { fd: String(PASSED_FD_BASE + n.tap.fdIndex) } : { ifname: n.tap.ifname, script: 'no', downscript: 'no', vnet_hdr: true };
    commands.push(
      { execute: 'netdev_add', arguments: { type: 'tap', id: `net${i}`, ...tap, vhost: n.vhost } },
      {
        execute: 'device_add',
        arguments: { driver: 'virtio-net-pci', id: `nic${i}`, bus: `rp${firstPort + i}`, netdev: `net${i}`, mac: n.mac, ...(n.mtu === undefined ? {} : { host_mtu: n.mtu }), romfile: '' },
      },
    );
  });
  return commands;
}

/** QEMU's command; unshare(1) execs QEMU in place, so the pid stays QEMU's and its namespace the new one. */
export function qemuCommand(d: VmDescription): string[] {
  const qemu = [d.qemuBinary, ...renderQemuArgs(d)];
  const inNetns = d.ownNetworkNamespace ? ['unshare', '--net', '--', ...qemu] : qemu;
  return d.dieWithOwner ? [...DIE_WITH_OWNER, ...inNetns] : inNetns;
}

/** setpriv(1) sets the parent-death signal and execs on: it holds across the execs that follow. */
export const DIE_WITH_OWNER = ['setpriv', '--pdeathsig', 'KILL', '--'];

/** Kernel command-line knobs that cut boot time of our guest kernel; measured in the reference notes. */
export const FAST_BOOT_CMDLINE = [
  'console=ttyS0',
  'quiet',
  'panic=-1',
  'cryptomgr.notests',
  'audit=0',
  'tsc=reliable',
  'no_timer_check',
  '8250.nr_uarts=1',
  'random.trust_cpu=on',
  'noapictimer',
  'rcupdate.rcu_expedited=1',
  'swiotlb=noforce',
];

/**
 * Knobs that buy boot time with the guest kernel's own defences (speculation mitigations, KASLR,
 * zeroed allocations, LSMs). Only where emulation makes every instruction count (TCG), and never
 * under KVM, where the guest kernel is the boundary a container meets first.
 */
export const TCG_ONLY_CMDLINE = ['mitigations=off', 'nokaslr', 'init_on_alloc=0', 'lsm=none'];

/** The rootfs is the nvdimm's pmem device, mounted read-only with DAX; no initramfs. */
export const ROOTFS_CMDLINE = ['root=/dev/pmem0', 'rootfstype=ext4', 'rootflags=dax', 'ro', 'init=/sbin/init'];
