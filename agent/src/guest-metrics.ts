// Guest-wide memory and CPU for the host's metrics: /proc/meminfo, /proc/stat
// and the cgroup that holds every container. The parsers are pure.
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import type { GuestCpuTimes, GuestMetrics } from '../../proto/gen/agent.js';
import { parseFlatKeyed, parseLimit } from './cgroup-stats.js';

/** USER_HZ, the unit of /proc/stat: 100 on every Linux architecture the guest runs on. */
const USEC_PER_TICK = 10_000;

/** /proc/meminfo as bytes by field name ("MemTotal: 1024 kB" → MemTotal → 1048576). */
export function parseMeminfo(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_()]+):\s+(\d+)(\s+kB)?$/.exec(line.trim());
    if (m) out.set(m[1]!, Number(m[2]) * (m[3] ? 1024 : 1));
  }
  return out;
}

const CPU_FIELDS = ['userUsec', 'niceUsec', 'systemUsec', 'idleUsec', 'iowaitUsec', 'irqUsec', 'softirqUsec', 'stealUsec'] as const;

/** The all-CPUs "cpu" line of /proc/stat, in microseconds; zeros when it is missing. */
export function parseProcStatCpu(text: string): GuestCpuTimes {
  const line = text.split('\n').find((l) => /^cpu\s/.test(l));
  const ticks = line?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  const times = {} as GuestCpuTimes;
  CPU_FIELDS.forEach((field, i) => (times[field] = (Number.isFinite(ticks[i]) ? ticks[i]! : 0) * USEC_PER_TICK));
  return times;
}

const read = (path: string) => readFile(path, 'utf8').catch(() => '');

/** containersCgroup: the cgroup v2 folder every container's cgroup is made in. */
export async function readGuestMetrics(containersCgroup: string): Promise<GuestMetrics> {
  const [meminfo, stat, memCurrent, cpuStat] = await Promise.all([
    read('/proc/meminfo'),
    read('/proc/stat'),
    read(join(containersCgroup, 'memory.current')),
    read(join(containersCgroup, 'cpu.stat')),
  ]);
  const mem = parseMeminfo(meminfo);
  const m = (k: string) => mem.get(k) ?? 0;
  return {
    memTotalBytes: m('MemTotal'),
    memFreeBytes: m('MemFree'),
    memAvailableBytes: m('MemAvailable'),
    buffersBytes: m('Buffers'),
    cachedBytes: m('Cached'),
    shmemBytes: m('Shmem'),
    cpu: parseProcStatCpu(stat),
    cpus: os.cpus().length,
    containersMemoryBytes: parseLimit(memCurrent),
    containersCpuUsec: parseFlatKeyed(cpuStat).get('usage_usec') ?? 0,
  };
}
