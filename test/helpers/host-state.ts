// What sandboxes leave on this host, for tests that check nothing is left behind.
import { readdirSync, readFileSync } from 'node:fs';

/** The processes of sandboxes: QEMU, virtiofsd and our shim, with their command lines. */
export function sandboxProcesses(): { pid: number; cmd: string }[] {
  const found: { pid: number; cmd: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue;
    }
    if (/qemu-system|virtiofsd|slirp4netns|containerd-shim-kata-ts-v2/.test(cmd) && !/vitest/.test(cmd)) found.push({ pid: Number(name), cmd });
  }
  return found;
}

/** Everything a sandbox could leave behind on this host. */
export function leftovers(): string[] {
  const found = sandboxProcesses().map((p) => `process ${p.pid}: ${p.cmd.slice(0, 120)}`);
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const target = line.split(' ')[4] ?? '';
    if (target.startsWith('/run/kata-ts/')) found.push(`mount ${target}`);
  }
  for (const dir of ['/run/kata-ts/vm', '/run/kata-ts/shared', '/run/kata-ts/template']) {
    try {
      for (const entry of readdirSync(dir)) found.push(`dir ${dir}/${entry}`);
    } catch {
      // not created yet
    }
  }
  return found;
}

export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}
