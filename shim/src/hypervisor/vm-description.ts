// A typed description of a sandbox VM. qemu-args.ts renders it into QEMU's
// argv; nothing here knows about containers or the agent protocol.

export type Accel = 'kvm' | 'tcg';

export type AgentChannel =
  /** virtio-serial port whose host end is a unix socket QEMU listens on. */
  | { kind: 'serial'; socketPath: string; portName: string }
  /** vhost-vsock device with the guest's context id. */
  | { kind: 'vsock'; guestCid: number };

/** A virtio-net NIC on a tap device. */
export interface NetworkDevice {
  /**
   * The tap: one whose fd the VMM is handed (fd 3 + fdIndex in its process), or one the VMM
   * creates by name in its own network namespace (see ownNetworkNamespace). A passed tap's name is
   * only for the record (libvirt XML, logs): QEMU sees the fd.
   */
  tap: { fdIndex: number; name?: string } | { ifname: string };
  mac: string;
  /** Announced to the guest (virtio-net's host_mtu); when not given the guest sets it. */
  mtu?: number;
  /** Let the host kernel's vhost-net move the packets (needs /dev/vhost-net). */
  vhost: boolean;
}

export interface VmDescription {
  /** Sandbox id; used only for the QEMU process name. */
  name: string;
  qemuBinary: string;
  accel: Accel;
  /** TCG translation buffer size in MiB (TCG only). */
  tcgTranslationBufferMiB?: number;
  cpus: number;
  maxCpus: number;
  memoryMiB: number;
  maxMemoryMiB: number;
  memorySlots: number;
  /** Firmware image (qboot boots a PVH kernel directly); undefined = QEMU's default. */
  firmware?: string;
  kernel: { path: string; cmdline: string[] };
  /** The guest rootfs image, exposed read-only as an nvdimm. */
  rootfsImage: { path: string; sizeBytes: number };
  /** virtio-fs share served by virtiofsd on socketPath. */
  sharedFs?: { socketPath: string; tag: string };
  agentChannel: AgentChannel;
  /** Network interfaces, in guest order. */
  networks?: NetworkDevice[];
  /**
   * The VMM runs in a network namespace of its own, made when it starts, instead of the host's:
   * its pid's namespace is then one that CNI can fill after the sandbox is created (ctr run --cni).
   */
  ownNetworkNamespace?: boolean;
  /** The VMM is killed when the process that started it dies, SIGKILL included (a job's runner). */
  dieWithOwner?: boolean;
  /**
   * Guest RAM in a file instead of an anonymous memfd (shared either way, so virtiofsd can map
   * it): a template's, whose pages then stay in the file; or a clone's, a memfd filled from that
   * file and passed to the VMM (fd 3 + fdIndex).
   */
  ramFile?: { path: string } | { fdIndex: number };
  /** PCIe root ports rp0, rp1, …: room for devices added after the start (rp0: the share, then the NICs). */
  hotplugPorts?: number;
  /** The shared filesystem and the NICs are added over QMP once the VM runs (a restored VM), not at the start. */
  lateDevices?: boolean;
  /** The VMM starts waiting for a saved VM (-incoming defer), whose state it reads from a passed fd (3 + fdIndex). */
  incoming?: { fdIndex: number };
  /** Guest console output goes to this file. */
  consoleLogPath: string;
  qmpSocketPath: string;
  pidFilePath: string;
}
