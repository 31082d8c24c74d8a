// Memory and CPU of one host process, from /proc. PSS is what a process costs
// the host: QEMU and virtiofsd both map the guest's RAM, and RSS would count
// those pages twice. The parsers are pure.
import { readFile } from 'node:fs/promises';

/** USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every Linux architecture we run on. */
const TICKS_PER_SECOND = 100;

export interface ProcessUsage {
  pid: number;
  rssBytes: number;
  /** Proportional set size; undefined where smaps_rollup cannot be read (kernels before 4.14). */
  pssBytes: number | undefined;
  /** User and system time together. */
  cpuSeconds: number;
}

/** User plus system CPU seconds from /proc/<pid>/stat; the command name may hold spaces and parentheses. */
export function parseCpuSeconds(stat: string): number | undefined {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) && fields.length > 12 ? (utime + stime) / TICKS_PER_SECOND : undefined;
}

/** One "Name:   N kB" field of /proc/<pid>/status or smaps_rollup, in bytes. */
export function parseKbField(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** undefined once the process is gone. */
export async function readProcessUsage(pid: number): Promise<ProcessUsage | undefined> {
  const [stat, status, rollup] = await Promise.all(
    ['stat', 'status', 'smaps_rollup'].map((file) => readFile(`/proc/${pid}/${file}`, 'utf8').catch(() => undefined)),
  );
  if (stat === undefined || status === undefined) return undefined;
  const cpuSeconds = parseCpuSeconds(stat);
  const rssBytes = parseKbField(status, 'VmRSS');
  if (cpuSeconds === undefined || rssBytes === undefined) return undefined; // a zombie has no VmRSS
  return { pid, rssBytes, pssBytes: rollup === undefined ? undefined : parseKbField(rollup, 'Pss'), cpuSeconds };
}
