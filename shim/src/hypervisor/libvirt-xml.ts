// Renders a VmDescription as a libvirt domain XML document: the VM that
// qemu-args.ts renders as QEMU's argv, in libvirt's terms. Pure; golden tests
// tie each element to its argv piece, and libvirt's own schema checks the
// document. Argv pieces that libvirt has no element for are named in comments.
import { DIE_WITH_OWNER, PASSED_FD_BASE, qmpArgs, renderQemuArgs } from './qemu-args.js';
import type { AgentChannel, NetworkDevice, VmDescription } from './vm-description.js';
import { comment, el, renderXml, type XmlNode } from './xml.js';

export const QEMU_NAMESPACE = 'http://libvirt.org/schemas/domain/qemu/1.0';

const MIB = 1024 * 1024;

/** What our argv has that a domain document cannot say. */
function unmapped(d: VmDescription): string {
  return [
    'QEMU arguments of this VM that libvirt has no domain element for:',
    '  -machine q35,sata=off,smbus=off,graphics=off   (nvdimm=on follows from the nvdimm device, vmport=off is <vmport/>)',
    `  -pidfile ${d.pidFilePath}   (libvirt keeps its own pidfile)`,
    '  -nodefaults -no-user-config   (libvirt always passes both)',
    '  -nographic   (a domain without <graphics> gets no display)',
    '  -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny   (qemu.conf seccomp_sandbox, not the domain)',
    ...(d.ownNetworkNamespace ? ['  QEMU runs under unshare(1) in a network namespace of its own, where it creates its tap'] : []),
    ...(d.dieWithOwner ? [`  QEMU runs under ${DIE_WITH_OWNER.slice(0, -1).join(' ')}: it dies with the process that started it`] : []),
  ].join('\n');
}

function memory(d: VmDescription): XmlNode[] {
  // libvirt counts memory devices in <memory>; the guest's RAM is the NUMA cell's.
  const totalMiB = d.memoryMiB + Math.ceil(d.rootfsImage.sizeBytes / MIB);
  return [
    el('maxMemory', { slots: d.memorySlots, unit: 'MiB' }, d.maxMemoryMiB),
    comment(`${d.memoryMiB} MiB of RAM and the rootfs nvdimm`),
    el('memory', { unit: 'MiB' }, totalMiB),
    el('currentMemory', { unit: 'MiB' }, totalMiB),
    // virtio-fs needs guest RAM that virtiofsd can map.
    el('memoryBacking', {}, [el('source', { type: 'memfd' }), el('access', { mode: 'shared' })]),
    el('vcpu', { placement: 'static', current: d.cpus }, d.maxCpus),
  ];
}

function os(d: VmDescription): XmlNode {
  return el('os', {}, [
    el('type', { arch: 'x86_64', machine: 'q35' }, 'hvm'),
    ...(d.firmware ? [el('loader', { type: 'rom' }, d.firmware)] : []),
    el('kernel', {}, d.kernel.path),
    el('cmdline', {}, d.kernel.cmdline.join(' ')),
  ]);
}

function cpu(d: VmDescription): XmlNode[] {
  const cpus = d.maxCpus > 1 ? `0-${d.maxCpus - 1}` : '0';
  return [
    el('features', {}, [
      el('acpi'),
      el('vmport', { state: 'off' }),
      ...(d.accel === 'tcg' && d.tcgTranslationBufferMiB ? [el('tcg', {}, [el('tb-cache', { unit: 'MiB' }, d.tcgTranslationBufferMiB)])] : []),
    ]),
    el('cpu', { mode: d.accel === 'tcg' ? 'maximum' : 'host-passthrough' }, [
      el('numa', {}, [el('cell', { id: 0, cpus, memory: d.memoryMiB, unit: 'MiB', memAccess: 'shared' })]),
    ]),
  ];
}

function rootfs(d: VmDescription): XmlNode[] {
  return [
    comment('the rootfs image, read-only on an unarmed nvdimm; no <pmem/>: it is an ordinary file, not host persistent memory'),
    el('memory', { model: 'nvdimm', access: 'shared' }, [
      el('source', {}, [el('path', {}, d.rootfsImage.path)]),
      el('target', {}, [el('size', { unit: 'bytes' }, d.rootfsImage.sizeBytes), el('node', {}, 0), el('readonly')]),
    ]),
  ];
}

function sharedFs(d: VmDescription): XmlNode[] {
  if (!d.sharedFs) return [];
  return [
    comment('served by a virtiofsd of its own, started before QEMU'),
    el('filesystem', { type: 'mount' }, [
      el('driver', { type: 'virtiofs', queue: 1024 }),
      el('source', { socket: d.sharedFs.socketPath }),
      el('target', { dir: d.sharedFs.tag }),
    ]),
  ];
}

function channel(c: AgentChannel): XmlNode[] {
  if (c.kind === 'vsock') return [el('vsock', { model: 'virtio' }, [el('cid', { auto: 'no', address: c.guestCid })])];
  return [
    el('controller', { type: 'virtio-serial', index: 0 }),
    comment('the agent channel: QEMU listens on the socket'),
    el('channel', { type: 'unix' }, [el('source', { mode: 'bind', path: c.socketPath }), el('target', { type: 'virtio', name: c.portName })]),
  ];
}

function nic(n: NetworkDevice): XmlNode[] {
  const [dev, note] =
    'fdIndex' in n.tap
      ? [n.tap.name, `QEMU is handed this tap as fd ${PASSED_FD_BASE + n.tap.fdIndex}; it lives in the pod's network namespace, beside the CNI interface it mirrors`]
      : [n.tap.ifname, 'QEMU creates this tap (script=no,downscript=no,vnet_hdr=on) in its own network namespace'];
  return [
    comment(note),
    el('interface', { type: 'ethernet' }, [
      el('mac', { address: n.mac }),
      ...(dev === undefined ? [comment("the tap's name was not recorded")] : [el('target', { dev, managed: 'no' })]),
      el('model', { type: 'virtio' }),
      el('driver', { name: n.vhost ? 'vhost' : 'qemu' }),
      ...(n.mtu === undefined ? [] : [el('mtu', { size: n.mtu })]),
      el('rom', { enabled: 'no' }),
    ]),
  ];
}

function consoleLog(d: VmDescription): XmlNode[] {
  const source = el('source', { path: d.consoleLogPath, append: 'on' });
  return [
    comment('the guest console (ttyS0), appended to the log file'),
    el('serial', { type: 'file' }, [source, el('target', { type: 'isa-serial', port: 0 })]),
    el('console', { type: 'file' }, [source, el('target', { type: 'serial', port: 0 })]),
  ];
}

/** libvirt adds these unless told not to; our VM has none of them. */
const NO_DEFAULT_DEVICES = [el('controller', { type: 'usb', model: 'none' })];

/** kata-ts speaks QMP on its own socket; libvirt keeps a monitor of its own, so this one is passed through as is. */
function qmpPassthrough(d: VmDescription): XmlNode {
  return el('qemu:commandline', {}, [comment('the QMP socket kata-ts controls the VM through'), ...qmpArgs(d).map((value) => el('qemu:arg', { value }))]);
}

export function renderLibvirtXml(d: VmDescription): string {
  // Also checks what the argv renderer refuses (an nvdimm image size that cannot be mapped).
  renderQemuArgs(d);
  const domain = el('domain', { type: d.accel === 'kvm' ? 'kvm' : 'qemu', 'xmlns:qemu': QEMU_NAMESPACE }, [
    el('name', {}, `kata-ts-${d.name}`),
    el('description', {}, `kata-ts sandbox ${d.name}: the VM of \`kata-ts vm argv\`, in libvirt's terms`),
    comment(unmapped(d)),
    ...memory(d),
    os(d),
    ...cpu(d),
    el('on_poweroff', {}, 'destroy'),
    // -no-reboot: a guest reboot (panic=-1 makes a panic one) ends the VM.
    el('on_reboot', {}, 'destroy'),
    el('on_crash', {}, 'destroy'),
    el('devices', {}, [
      el('emulator', {}, d.qemuBinary),
      ...rootfs(d),
      ...sharedFs(d),
      ...(d.networks ?? []).flatMap(nic),
      ...channel(d.agentChannel),
      el('rng', { model: 'virtio' }, [el('backend', { model: 'random' }, '/dev/urandom')]),
      el('memballoon', { model: 'virtio', freePageReporting: 'on' }),
      ...consoleLog(d),
      ...NO_DEFAULT_DEVICES,
    ]),
    qmpPassthrough(d),
  ]);
  return renderXml(domain);
}
