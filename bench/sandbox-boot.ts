// Benchmark (not a test): boots sandboxes one after another and prints the
// median of each boot phase, measured from QEMU spawn, and the host memory
// (PSS) of QEMU and virtiofsd for an idle sandbox.
//   node dist/bench/sandbox-boot.js [runs]
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '../common/log.js';
import { defaultSpec } from '../shim/src/sandbox/default-spec.js';
import { ensureRunRoot, Sandbox } from '../shim/src/sandbox/sandbox.js';
import { DEFAULT_SETTINGS, type SandboxSettings } from '../shim/src/sandbox/settings.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const runs = Number(process.argv[2] ?? process.env.BENCH_RUNS ?? 5);

/** Proportional set size in MB, from smaps_rollup. */
function pssMB(pid: number | undefined): number {
  if (!pid) return NaN;
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? NaN);
  return kb / 1024;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const settings: SandboxSettings = { ...DEFAULT_SETTINGS, kernelPath: join(repo, 'build/vmlinux'), imagePath: join(repo, 'build/rootfs.img') };
  await ensureRunRoot(settings);
  const log = createLogger({ level: 'error' });
  const rows: Record<string, number>[] = [];
  let accel = '';
  let channel = '';
  for (let i = 0; i < runs; i++) {
    const sandbox = await Sandbox.start(`bench-${process.pid}-${i}`, settings, log);
    try {
      const t = sandbox.timeline;
      accel = t.accel;
      channel = t.channel;
      // Let the guest settle so the memory figure is that of an idle sandbox.
      await new Promise((r) => setTimeout(r, 500));
      const qemuPss = pssMB(sandbox.vm.pid);
      const virtiofsdPss = pssMB(sandbox.vm.processes().find((p) => p.role === 'virtiofsd')?.pid);
      await sandbox.createContainer('c', { spec: defaultSpec({ args: ['echo', 'hi'] }), rootfs: join(repo, 'build/busybox-rootfs') });
      const { process: proc } = await sandbox.startContainer('c');
      const started = performance.now() - sandbox.vm.spawnedAt;
      const output = await new Promise<number>((res) => proc.stdout.once('data', () => res(performance.now() - sandbox.vm.spawnedAt)));
      await proc.wait();
      rows.push({
        kernelStart: t.kernelStartMs,
        init: t.initMs,
        agentListening: t.agentListeningMs,
        agentAnswered: t.agentAnsweredMs,
        sandboxReady: t.sandboxReadyMs,
        containerStarted: started,
        outputReceived: output,
        qemuPss,
        virtiofsdPss,
      });
      process.stderr.write(`run ${i + 1}/${runs}: agent answered ${t.agentAnsweredMs} ms, output ${Math.round(output)} ms, PSS ${(qemuPss + virtiofsdPss).toFixed(1)} MB\n`);
    } finally {
      await sandbox.stop();
    }
  }
  const col = (k: string) => median(rows.map((r) => r[k]!));
  const ms = (k: string) => `${Math.round(col(k))} ms`.padStart(9);
  console.log(`\nkata-ts sandbox boot, median of ${runs} runs (accel=${accel}, channel=${channel}); times from QEMU spawn`);
  console.log(`  kernel start              ${ms('kernelStart')}`);
  console.log(`  init                      ${ms('init')}`);
  console.log(`  agent listening           ${ms('agentListening')}`);
  console.log(`  agent answers first call  ${ms('agentAnswered')}   (target < 2300 ms)`);
  console.log(`  sandbox ready             ${ms('sandboxReady')}`);
  console.log(`  first container started   ${ms('containerStarted')}`);
  console.log(`  its output received       ${ms('outputReceived')}`);
  const total = median(rows.map((r) => r.qemuPss! + r.virtiofsdPss!));
  console.log(`  idle PSS: qemu ${col('qemuPss').toFixed(1)} MB + virtiofsd ${col('virtiofsdPss').toFixed(1)} MB = ${total.toFixed(1)} MB   (target < 180 MB)`);
}

main().catch((err: Error) => {
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
