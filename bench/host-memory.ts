// What processes cost the host, for the benchmarks: PSS from smaps_rollup,
// and the tree of processes below the ones that match.
import { readdirSync, readFileSync } from 'node:fs';

/** The summed PSS of these processes in MB; one that exited counts nothing. */
export function pssMB(pids: readonly (number | undefined)[]): number {
  let kb = 0;
  for (const pid of pids) {
    if (pid === undefined) continue;
    try {
      kb += Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
    } catch {
      // exited
    }
  }
  return kb / 1024;
}

/** The processes whose command line (NUL-separated) matches, and all their descendants. */
export function processTree(matches: (cmdline: string) => boolean): number[] {
  const parents = new Map<number, number>();
  const tree = new Set<number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parents.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      if (matches(readFileSync(`/proc/${name}/cmdline`, 'utf8'))) tree.add(Number(name));
    } catch {
      // exited
    }
  }
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parents)
      if (tree.has(ppid) && !tree.has(pid)) {
        tree.add(pid);
        grew = true;
      }
  }
  return [...tree];
}
