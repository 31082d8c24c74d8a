// A default OCI runtime spec for a container, in the shape containerd's and
// crun's defaults have: the usual namespaces, mounts, capabilities and masks.
// Used where no containerd provides a spec (the demo, tests, benchmarks).

export interface DefaultSpecOptions {
  args: string[];
  env?: string[];
  cwd?: string;
  terminal?: boolean;
  uid?: number;
  gid?: number;
  hostname?: string;
  readonlyRootfs?: boolean;
  consoleSize?: { height: number; width: number };
}

const DEFAULT_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export function processSpec(o: DefaultSpecOptions): Record<string, unknown> {
  return {
    terminal: o.terminal ?? false,
    ...(o.consoleSize ? { consoleSize: o.consoleSize } : {}),
    user: { uid: o.uid ?? 0, gid: o.gid ?? 0 },
    args: o.args,
    env: o.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', ...(o.terminal ? ['TERM=xterm'] : [])],
    cwd: o.cwd ?? '/',
    capabilities: { bounding: DEFAULT_CAPS, effective: DEFAULT_CAPS, permitted: DEFAULT_CAPS },
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
    noNewPrivileges: true,
  };
}

export function defaultSpec(o: DefaultSpecOptions): Record<string, unknown> {
  return {
    ociVersion: '1.0.2',
    process: processSpec(o),
    root: { path: 'rootfs', readonly: o.readonlyRootfs ?? false },
    hostname: o.hostname ?? 'container',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }, { type: 'cgroup' }],
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware'],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
