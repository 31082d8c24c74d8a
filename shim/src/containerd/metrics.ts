// Guest cgroup v2 statistics as the io.containerd.cgroups.v2.Metrics that
// `ctr task metrics` and the CRI plugin decode.
import { google, io } from '../../../proto/gen/containerd/containerd.js';
import type { ContainerStats } from '../../../proto/gen/agent.js';

export const METRICS_TYPE_URL = 'io.containerd.cgroups.v2.Metrics';

export function toCgroupsV2Metrics(s: ContainerStats): io.containerd.cgroups.v2.IMetrics {
  const m = s.memory;
  return {
    pids: s.pids ? { current: s.pids.current, limit: s.pids.limit } : null,
    cpu: s.cpu
      ? {
          usageUsec: s.cpu.usageUsec,
          userUsec: s.cpu.userUsec,
          systemUsec: s.cpu.systemUsec,
          nrPeriods: s.cpu.nrPeriods,
          nrThrottled: s.cpu.nrThrottled,
          throttledUsec: s.cpu.throttledUsec,
        }
      : null,
    memory: m
      ? {
          anon: m.anon,
          file: m.file,
          kernelStack: m.kernelStack,
          slab: m.slab,
          sock: m.sock,
          shmem: m.shmem,
          fileMapped: m.fileMapped,
          fileDirty: m.fileDirty,
          fileWriteback: m.fileWriteback,
          inactiveAnon: m.inactiveAnon,
          activeAnon: m.activeAnon,
          inactiveFile: m.inactiveFile,
          activeFile: m.activeFile,
          unevictable: m.unevictable,
          pgfault: m.pgfault,
          pgmajfault: m.pgmajfault,
          usage: m.usage,
          usageLimit: m.limit,
          swapUsage: m.swapUsage,
          swapLimit: m.swapLimit,
        }
      : null,
    memoryEvents: m ? { max: m.maxEvents, oom: m.oomEvents, oomKill: m.oomKillEvents } : null,
    io: { usage: s.io.map((e) => ({ major: e.major, minor: e.minor, rbytes: e.rbytes, wbytes: e.wbytes, rios: e.rios, wios: e.wios })) },
  };
}

export function metricsAny(s: ContainerStats): google.protobuf.IAny {
  return { type_url: METRICS_TYPE_URL, value: io.containerd.cgroups.v2.Metrics.encode(toCgroupsV2Metrics(s)).finish() };
}
