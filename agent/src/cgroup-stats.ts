// Reads a container's cgroup v2 statistics. The parsers are pure.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerStats, IoEntry } from '../../proto/gen/agent.js';

/** Parses "key value" lines (cpu.stat, memory.stat, memory.events). */
export function parseFlatKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^\d+$/.test(value)) out.set(key, Number(value));
  }
  return out;
}

/** Parses a single value file where "max" means no limit (reported as 0). */
export function parseLimit(text: string): number {
  const t = text.trim();
  return t === 'max' || t === '' ? 0 : Number(t);
}

/** Parses io.stat lines: "MAJ:MIN rbytes=… wbytes=… rios=… wios=… …". */
export function parseIoStat(text: string): IoEntry[] {
  const entries: IoEntry[] = [];
  for (const line of text.split('\n')) {
    const [dev, ...pairs] = line.trim().split(/\s+/);
    if (!dev || !dev.includes(':')) continue;
    const [major, minor] = dev.split(':').map(Number);
    const kv = new Map(pairs.map((p) => p.split('=') as [string, string]));
    const n = (k: string) => Number(kv.get(k) ?? 0);
    entries.push({ major: major ?? 0, minor: minor ?? 0, rbytes: n('rbytes'), wbytes: n('wbytes'), rios: n('rios'), wios: n('wios') });
  }
  return entries;
}

const read = (dir: string, file: string) => readFile(join(dir, file), 'utf8').catch(() => '');

export async function readContainerStats(cgroupDir: string): Promise<ContainerStats> {
  const [cpuStat, memStat, memEvents, memCurrent, memMax, swapCurrent, swapMax, pidsCurrent, pidsMax, ioStat, memPeak] = await Promise.all(
    ['cpu.stat', 'memory.stat', 'memory.events', 'memory.current', 'memory.max', 'memory.swap.current', 'memory.swap.max', 'pids.current', 'pids.max', 'io.stat', 'memory.peak'].map(
      (f) => read(cgroupDir, f),
    ),
  );
  const cpu = parseFlatKeyed(cpuStat!);
  const mem = parseFlatKeyed(memStat!);
  const events = parseFlatKeyed(memEvents!);
  const m = (k: string) => mem.get(k) ?? 0;
  return {
    cpu: {
      usageUsec: cpu.get('usage_usec') ?? 0,
      userUsec: cpu.get('user_usec') ?? 0,
      systemUsec: cpu.get('system_usec') ?? 0,
      nrPeriods: cpu.get('nr_periods') ?? 0,
      nrThrottled: cpu.get('nr_throttled') ?? 0,
      throttledUsec: cpu.get('throttled_usec') ?? 0,
    },
    memory: {
      usage: parseLimit(memCurrent!),
      limit: parseLimit(memMax!),
      swapUsage: parseLimit(swapCurrent!),
      swapLimit: parseLimit(swapMax!),
      anon: m('anon'),
      file: m('file'),
      kernelStack: m('kernel_stack'),
      slab: m('slab'),
      sock: m('sock'),
      shmem: m('shmem'),
      fileMapped: m('file_mapped'),
      fileDirty: m('file_dirty'),
      fileWriteback: m('file_writeback'),
      pgfault: m('pgfault'),
      pgmajfault: m('pgmajfault'),
      inactiveAnon: m('inactive_anon'),
      activeAnon: m('active_anon'),
      inactiveFile: m('inactive_file'),
      activeFile: m('active_file'),
      unevictable: m('unevictable'),
      oomEvents: events.get('oom') ?? 0,
      oomKillEvents: events.get('oom_kill') ?? 0,
      maxEvents: events.get('max') ?? 0,
      peak: parseLimit(memPeak!),
    },
    pids: { current: parseLimit(pidsCurrent!), limit: parseLimit(pidsMax!) },
    io: parseIoStat(ioStat!),
  };
}
