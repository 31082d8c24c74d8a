// The sandbox VM's size: the configured defaults plus what the first
// container's resource limits ask for, as Kata does.

export interface VmSize {
  cpus: number;
  memoryMiB: number;
}

export interface LinuxResources {
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

/** containerd's CRI puts a pod's own limits only in these annotations of its sandbox's spec. */
export const POD_SIZE_ANNOTATIONS = {
  cpuQuota: 'io.kubernetes.cri.sandbox-cpu-quota',
  cpuPeriod: 'io.kubernetes.cri.sandbox-cpu-period',
  memory: 'io.kubernetes.cri.sandbox-memory',
} as const;

export class SizeAnnotationError extends Error {
  constructor(
    readonly annotation: string,
    value: string,
  ) {
    super(`annotation ${annotation}: ${JSON.stringify(value)} is not a whole number of at least 0`);
    this.name = 'SizeAnnotationError';
  }
}

/** A pod sandbox's limits (the sum of its containers', as kubelet computes them) from its annotations. */
export function podSandboxResources(annotations: Record<string, string> | undefined): LinuxResources {
  const read = (name: string): number | undefined => {
    const raw = annotations?.[name];
    if (raw === undefined || raw === '') return undefined;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 0) throw new SizeAnnotationError(name, raw);
    return n;
  };
  const quota = read(POD_SIZE_ANNOTATIONS.cpuQuota);
  const period = read(POD_SIZE_ANNOTATIONS.cpuPeriod);
  const memory = read(POD_SIZE_ANNOTATIONS.memory);
  return {
    ...(memory !== undefined ? { memory: { limit: memory } } : {}),
    ...(quota !== undefined && period !== undefined ? { cpu: { quota, period } } : {}),
  };
}
