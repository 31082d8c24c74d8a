// Benchmark (not a test): starts sandboxes one after another, booted cold and
// restored from a template in turn, and prints the median of each phase side
// by side, measured from QEMU spawn, and the host memory (PSS) of QEMU and
// virtiofsd for an idle sandbox.
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

type Mode = 'cold' | 'template';

async function bootOnce(settings: SandboxSettings, name: string): Promise<{ row: Record<string, number>; accel: string; channel: string }> {
  const log = createLogger({ level: 'error' });
  const t0 = performance.now();
  const sandbox = await Sandbox.start(name, settings, log, { lateNetwork: true });
  try {
    const t = sandbox.timeline;
    // Let the guest settle so the memory figure is that of an idle sandbox.
    await new Promise((r) => setTimeout(r, 500));
    const qemuPss = pssMB(sandbox.vm.pid);
    const virtiofsdPss = pssMB(sandbox.vm.processes().find((p) => p.role === 'virtiofsd')?.pid);
    await sandbox.createContainer('c', { spec: defaultSpec({ args: ['echo', 'hi'] }), rootfs: join(repo, 'build/busybox-rootfs') });
    const { process: proc } = await sandbox.startContainer('c');
    const started = performance.now() - sandbox.vm.spawnedAt;
    const output = await new Promise<number>((res) => proc.stdout.once('data', () => res(performance.now() - sandbox.vm.spawnedAt)));
    await proc.wait();
    const row = {
      beforeSpawn: sandbox.vm.spawnedAt - t0,
      kernelStart: t.kernelStartMs,
      init: t.initMs,
      agentListening: t.agentListeningMs,
      restored: t.restoredMs ?? Number.NaN,
      agentAnswered: t.agentAnsweredMs,
      sandboxReady: t.sandboxReadyMs,
      containerStarted: started,
      outputReceived: output,
      qemuPss,
      virtiofsdPss,
    };
    return { row, accel: t.accel, channel: t.channel };
  } finally {
    await sandbox.stop();
  }
}

async function main(): Promise<void> {
  const base: SandboxSettings = { ...DEFAULT_SETTINGS, kernelPath: join(repo, 'build/vmlinux'), imagePath: join(repo, 'build/rootfs.img') };
  const settings: Record<Mode, SandboxSettings> = { cold: { ...base, templateEnabled: false }, template: { ...base, templateEnabled: true } };
  await ensureRunRoot(base);
  // The template exists before anything is measured (the first restored start would make it).
  await bootOnce(settings.template, `bench-${process.pid}-warm`);
  const rows: Record<Mode, Record<string, number>[]> = { cold: [], template: [] };
  let accel = '';
  let channel = '';
  // Cold and restored starts alternate, so drift on a busy host hits both alike.
  for (let i = 0; i < runs; i++) {
    for (const mode of ['cold', 'template'] as const) {
      const r = await bootOnce(settings[mode], `bench-${process.pid}-${mode}-${i}`);
      ({ accel, channel } = r);
      rows[mode].push(r.row);
      process.stderr.write(`run ${i + 1}/${runs} ${mode}: ready ${r.row.sandboxReady} ms, output ${Math.round(r.row.outputReceived!)} ms, PSS ${(r.row.qemuPss! + r.row.virtiofsdPss!).toFixed(1)} MB\n`);
    }
  }
  const col = (mode: Mode, k: string) => median(rows[mode].map((r) => r[k]!));
  const cell = (mode: Mode, k: string) => (Number.isNaN(col(mode, k)) ? '-' : `${Math.round(col(mode, k))} ms`).padStart(10);
  const line = (label: string, k: string, note = '') => console.log(`  ${label.padEnd(34)} ${cell('cold', k)} ${cell('template', k)}${note}`);
  console.log(`\nkata-ts sandbox start, median of ${runs} runs each (accel=${accel}, channel=${channel}); times from QEMU spawn`);
  console.log(`  ${''.padEnd(34)} ${'cold boot'.padStart(10)} ${'template'.padStart(10)}`);
  line('before QEMU spawn (from the call)', 'beforeSpawn', '   (template: its RAM copied into the clone\'s memfd)');
  line('kernel start', 'kernelStart');
  line('init', 'init');
  line('agent listening', 'agentListening');
  line('restored, devices added, running', 'restored');
  line('agent answers first call', 'agentAnswered');
  line('sandbox ready', 'sandboxReady');
  line('first container started', 'containerStarted');
  line('its output received', 'outputReceived');
  const pss = (mode: Mode) => `${median(rows[mode].map((r) => r.qemuPss! + r.virtiofsdPss!)).toFixed(1)} MB`.padStart(10);
  console.log(`  ${'idle PSS, QEMU + virtiofsd'.padEnd(34)} ${pss('cold')} ${pss('template')}`);
  const ratio = col('template', 'outputReceived') / col('cold', 'outputReceived');
  console.log(`  restored / cold, to the first output: ${ratio.toFixed(2)} (target: at most 0.5)`);
}

main().catch((err: Error) => {
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
