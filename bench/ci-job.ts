// Benchmark (not a test): what a CI job costs in a kata-ts VM (`kata-ts job
// run … -- true` on the busybox image tarball) against the same image run with
// runc through containerd (`ctr run --rm … true`), alternated in one run.
//   node dist/bench/ci-job.js [runs]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, PrivateContainerd, REPO } from '../test/helpers/containerd.js';

const runs = Number(process.argv[2] ?? process.env.BENCH_RUNS ?? 5);
const KATA_TS = join(REPO, 'build/bin/kata-ts');

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface Phases {
  boot: number;
  image: number;
  job: number;
  teardown: number;
}

function kataJob(dir: string, n: number): { ms: number; phases: Phases } {
  const report = join(dir, `report-${n}.json`);
  const t0 = performance.now();
  const r = spawnSync(KATA_TS, ['job', 'run', '--image-tar', BUSYBOX_IMAGE_TAR, '--layer-cache', join(dir, 'layers'), '--report', report, '--', 'true'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`kata-ts job run failed (${r.status}): ${r.stderr.toString()}`);
  return { ms, phases: (JSON.parse(readFileSync(report, 'utf8')) as { phasesMs: Phases }).phasesMs };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kata-ts-bench-job-'));
  const ctrd = await PrivateContainerd.start();
  try {
    await ctrd.importImage(BUSYBOX_IMAGE_TAR);
    kataJob(dir, 0); // fills the layer cache, as the first job with an image does
    const kata: number[] = [];
    const runc: number[] = [];
    const phases: Phases[] = [];
    for (let i = 1; i <= runs; i++) {
      const k = kataJob(dir, i);
      kata.push(k.ms);
      phases.push(k.phases);
      const t0 = performance.now();
      const r = await ctrd.ctr(['run', '--rm', '--runtime', 'io.containerd.runc.v2', BUSYBOX_IMAGE, `bench-job-runc-${process.pid}-${i}`, 'true']);
      if (r.code !== 0) throw new Error(`runc: ${r.stderr}`);
      runc.push(performance.now() - t0);
    }
    const fmt = (x: number) => `${Math.round(x)} ms`.padStart(9);
    const k = median(kata);
    const c = median(runc);
    console.log(`\nCI job \`true\` on the busybox image, median of ${runs} (layers cached):`);
    console.log(`  kata-ts job run      ${fmt(k)}   runc (ctr run --rm) ${fmt(c)}   ratio ${(k / c).toFixed(1)}×`);
    const p = (key: keyof Phases) => fmt(median(phases.map((x) => x[key])));
    console.log(`  kata-ts phases: boot ${p('boot')}, image ${p('image')}, job ${p('job')}, teardown ${p('teardown')}`);
  } finally {
    await ctrd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
