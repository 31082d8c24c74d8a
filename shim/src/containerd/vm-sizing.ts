// The sandbox VM's size: the configured defaults plus what the first
// container's resource limits ask for, as Kata does.

export interface VmSize {
  cpus: number;
  memoryMiB: number;
}

interface LinuxResources {
  memory?: { limit?: number };
  cpu?: { quota?: number; period?: number };
}

export function sizeVm(defaults: VmSize, resources: LinuxResources | undefined): VmSize {
  const limit = resources?.memory?.limit ?? 0;
  const extraMiB = limit > 0 ? Math.ceil(limit / (1024 * 1024)) : 0;
  const quota = resources?.cpu?.quota ?? 0;
  const period = resources?.cpu?.period ?? 0;
  const extraCpus = quota > 0 && period > 0 ? Math.ceil(quota / period) : 0;
  // The memfd backing guest RAM must be a whole number of MiB; keep it a multiple of 2 for hotplug alignment.
  const memoryMiB = Math.ceil((defaults.memoryMiB + extraMiB) / 2) * 2;
  return { cpus: defaults.cpus + extraCpus, memoryMiB };
}
