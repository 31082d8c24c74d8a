// Benchmark (not a test): kata-ts against runc through the same private
// containerd and the real ctr, in one run, printed side by side with ratios.
//   node dist/bench/shim-vs-runc.js [runs]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../common/log.js';
import { sandboxNameOnHost } from '../shim/src/containerd/ids.js';
import { defaultSpec } from '../shim/src/sandbox/default-spec.js';
import { ensureRunRoot, Sandbox } from '../shim/src/sandbox/sandbox.js';
import { DEFAULT_SETTINGS } from '../shim/src/sandbox/settings.js';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, PrivateContainerd, REPO } from '../test/helpers/containerd.js';
import { processTree, pssMB } from './host-memory.js';

const runs = Number(process.argv[2] ?? process.env.BENCH_RUNS ?? 5);
const RUNTIMES = { runc: 'io.containerd.runc.v2', 'kata-ts': 'io.containerd.kata-ts.v2' } as const;
type Name = keyof typeof RUNTIMES;
let seq = 0;
const id = (name: string) => `bench-${name}-${process.pid}-${++seq}`;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function timed(fn: () => Promise<{ code: number; stderr: string }>): Promise<number> {
  const t0 = performance.now();
  const r = await fn();
  if (r.code !== 0) throw new Error(`command failed (${r.code}): ${r.stderr}`);
  return performance.now() - t0;
}

/** Seconds since boot, as /proc reports process start times (10 ms steps). */
const uptime = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * Milliseconds from `since` (uptime seconds) until the sandbox's QEMU process started, found by its
 * pidfile under the default run root; resolves once the process was seen, or with NaN if it never was.
 */
async function qemuStartedAfter(sandboxId: string, since: number, done: () => boolean): Promise<number> {
  const pidfile = `/run/kata-ts/vm/${sandboxNameOnHost('default', sandboxId)}/qemu.pid`;
  while (!done()) {
    if (existsSync(pidfile)) {
      try {
        const stat = readFileSync(`/proc/${readFileSync(pidfile, 'utf8').trim()}/stat`, 'utf8');
        const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
        return (startTicks / CLOCK_TICKS_PER_SECOND - since) * 1000;
      } catch {
        // pidfile half-written or QEMU already gone: look again
      }
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return Number.NaN;
}

/** `ctr run --rm … true` with kata-ts, and how long after ctr was started QEMU was spawned. */
async function ctrRun(ctrd: PrivateContainerd, runtime: string, name: string): Promise<{ ms: number; qemuMs: number }> {
  const container = id(name);
  const since = uptime();
  let finished = false;
  const qemu = qemuStartedAfter(container, since, () => finished);
  const ms = await timed(() => ctrd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, container, 'true'], { timeoutMs: 120_000 })).finally(() => (finished = true));
  return { ms, qemuMs: await qemu };
}

/**
 * The same work as `ctr run --rm … true` through the sandbox library alone: no containerd, no
 * shim, but the same kind of rootfs containerd hands the shim: an overlay on the image's files.
 */
async function libraryRun(): Promise<{ ms: number; qemuMs: number }> {
  const settings = { ...DEFAULT_SETTINGS, kernelPath: join(REPO, 'build/vmlinux'), imagePath: join(REPO, 'build/rootfs.img') };
  await ensureRunRoot(settings);
  const scratch = mkdtempSync('/tmp/kata-ts-bench-');
  for (const d of ['upper', 'work', 'rootfs']) mkdirSync(join(scratch, d));
  const rootfs = join(scratch, 'rootfs');
  const t0 = performance.now();
  let qemuMs = Number.NaN;
  try {
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${join(REPO, 'build/busybox-rootfs')},upperdir=${scratch}/upper,workdir=${scratch}/work`, rootfs]);
    const sandbox = await Sandbox.start(id('lib'), settings, createLogger({ level: 'error' }));
    qemuMs = sandbox.vm.spawnedAt - t0;
    try {
      await sandbox.createContainer('c', { spec: defaultSpec({ args: ['true'] }), rootfs });
      const { process: proc } = await sandbox.startContainer('c');
      await proc.wait();
      await sandbox.removeContainer('c');
    } finally {
      await sandbox.stop();
    }
  } finally {
    execFileSync('umount', [rootfs], { stdio: 'ignore' });
  }
  const ms = performance.now() - t0;
  rmSync(scratch, { recursive: true, force: true });
  return { ms, qemuMs };
}

async function main(): Promise<void> {
  const ctrd = await PrivateContainerd.start({ logLevel: 'warn' });
  try {
    await ctrd.importImage(BUSYBOX_IMAGE_TAR);
    const results: Record<Name, Record<string, number>> = { runc: {}, 'kata-ts': {} };
    // kata-ts runs alternate with the same work through the library, so drift on a busy host hits both alike.
    const library: { ms: number; qemuMs: number }[] = [];
    const viaCtr: { ms: number; qemuMs: number }[] = [];
    // The shipped configuration restores sandboxes from a template; this one boots them cold.
    const coldConfig = join(mkdtempSync('/tmp/kata-ts-bench-cfg-'), 'cold.toml');
    writeFileSync(coldConfig, '[factory]\nenable_template = false\n');
    const cold: number[] = [];
    // The template exists before anything is measured (the first restored start makes it).
    await ctrd.ctr(['run', '--rm', '--runtime', RUNTIMES['kata-ts'], BUSYBOX_IMAGE, id('warm'), 'true'], { timeoutMs: 120_000 });
    for (const [name, runtime] of Object.entries(RUNTIMES) as [Name, string][]) {
      const run: number[] = [];
      for (let i = 0; i < runs; i++) {
        if (name === 'runc') {
          run.push(await timed(() => ctrd.ctr(['run', '--rm', '--runtime', runtime, BUSYBOX_IMAGE, id(name), 'true'], { timeoutMs: 120_000 })));
          continue;
        }
        const r = await ctrRun(ctrd, runtime, name);
        viaCtr.push(r);
        run.push(r.ms);
        cold.push(await timed(() => ctrd.ctr(['run', '--rm', '--runtime', runtime, '--runtime-config-path', coldConfig, BUSYBOX_IMAGE, id('cold'), 'true'], { timeoutMs: 120_000 })));
        library.push(await libraryRun());
      }
      const c = id(name);
      await ctrd.ctr(['run', '-d', '--runtime', runtime, BUSYBOX_IMAGE, c, 'sleep', '600'], { timeoutMs: 120_000 });
      const exec: number[] = [];
      for (let i = 0; i < runs; i++) exec.push(await timed(() => ctrd.ctr(['task', 'exec', '--exec-id', `e${i}`, c, 'true'])));
      const t0 = performance.now();
      // dd, not head: busybox head is itself slow under TCG and would measure the producer.
      const big = await ctrd.ctr(['task', 'exec', '--exec-id', 'big', c, 'dd', 'if=/dev/zero', 'bs=1000000', 'count=100'], { timeoutMs: 300_000 });
      const seconds = (performance.now() - t0) / 1000;
      if (big.stdout.length !== 100_000_000) throw new Error(`${name}: got ${big.stdout.length} bytes of 100000000`);
      await new Promise((r) => setTimeout(r, 1000));
      const shimPattern = name === 'runc' ? /containerd-shim-runc-v2.*-id\0bench-runc/ : /containerd-shim-kata-ts-v2.*-id\0bench-kata-ts/;
      const tree = processTree((cmd) => shimPattern.test(cmd));
      const pss = pssMB(tree);
      const shimOnly = pssMB(tree.filter((p) => shimPattern.test(readFileSync(`/proc/${p}/cmdline`, 'utf8'))));
      await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', c]);
      await new Promise((r) => setTimeout(r, 1000));
      await ctrd.ctr(['task', 'delete', c]);
      await ctrd.ctr(['container', 'delete', c]);
      results[name] = { run: median(run), exec: median(exec), throughput: 100 / seconds, pss, shimPss: shimOnly };
      process.stderr.write(`${name}: run ${run.map(Math.round).join(' ')} ms; exec ${exec.map(Math.round).join(' ')} ms\n`);
    }
    process.stderr.write(`library: run ${library.map((r) => Math.round(r.ms)).join(' ')} ms\n`);
    process.stderr.write(`kata-ts cold: run ${cold.map(Math.round).join(' ')} ms\n`);
    const r = results.runc;
    const k = results['kata-ts'];
    const row = (label: string, a: number, b: number, unit: string, digits = 0) =>
      `  ${label.padEnd(36)} ${a.toFixed(digits).padStart(9)} ${b.toFixed(digits).padStart(9)}  ${unit.padEnd(5)} ${(b / a).toFixed(2).padStart(6)}x`;
    console.log(`\nkata-ts vs runc through containerd 1.6 + ctr, median of ${runs} (kata-ts under ${'TCG'} here)`);
    console.log(`  ${''.padEnd(36)} ${'runc'.padStart(9)} ${'kata-ts'.padStart(9)}  ${''.padEnd(5)} ${'ratio'.padStart(7)}`);
    console.log(row('ctr run --rm … true (from template)', r.run!, k.run!, 'ms'));
    console.log(row('ctr run --rm … true (cold boot)', r.run!, median(cold), 'ms'));
    console.log(`  restored / cold boot: ${(k.run! / median(cold)).toFixed(2)} (target: at most 0.5; aim under 1200 ms restored)`);
    console.log(row('ctr task exec … true', r.exec!, k.exec!, 'ms'));
    console.log(row('stdout throughput, 100 MB', r.throughput!, k.throughput!, 'MB/s', 1));
    console.log(row('PSS per running container (all procs)', r.pss!, k.pss!, 'MB', 1));
    console.log(row('PSS of the shim itself', r.shimPss!, k.shimPss!, 'MB', 1));
    const libraryMs = median(library.map((r) => r.ms));
    const ctrQemu = median(viaCtr.map((r) => r.qemuMs));
    const libraryQemu = median(library.map((r) => r.qemuMs));
    // Each ctr run is paired with the library run right after it: the median of the differences
    // shrugs off a slow moment of the host better than the difference of the medians.
    const added = median(viaCtr.map((r, i) => r.ms - library[i]!.ms));
    console.log(`  the same run through the sandbox library alone: ${Math.round(libraryMs)} ms; containerd + ctr + shim add ${Math.round(added)} ms (median of paired differences; target < 50 ms)`);
    console.log(`  QEMU is spawned ${Math.round(ctrQemu)} ms after ctr starts (±10 ms), ${Math.round(libraryQemu)} ms after the library is called: ${Math.round(ctrQemu - libraryQemu)} ms before the boot`);
    // Each shim logs when it spawned QEMU, counted from its own process start (containerd copies shim logs into its own).
    const shimToQemu = [...readFileSync(ctrd.logPath, 'utf8').matchAll(/msg="qemu started".*msSinceProcessStart=(\d+)/g)].map((m) => Number(m[1]));
    if (shimToQemu.length > 0) console.log(`  of that, the shim's process took ${median(shimToQemu)} ms from its start to QEMU's spawn (median of ${shimToQemu.length}, from its log)`);
  } finally {
    await ctrd.stop();
  }
}

main().catch((err: Error) => {
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
