// Benchmark (not a test): host memory of idle sandboxes through containerd
// and the real ctr, after a workload: PSS per sandbox (QEMU + virtiofsd +
// shim) with 1 and with 20 running, booted cold and restored from a template,
// and with KSM where the host lets us turn it on; and where one sandbox's
// QEMU memory goes.
//   node dist/bench/idle-memory.js [sandboxes]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, PrivateContainerd } from '../test/helpers/containerd.js';
import { processTree, pssMB } from './host-memory.js';
import { qemuPssBreakdown } from './pss-breakdown.js';

const many = Number(process.argv[2] ?? process.env.BENCH_SANDBOXES ?? 20);
const KATA = 'io.containerd.kata-ts.v2';
const KSM = '/sys/kernel/mm/ksm';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** What runs before the sandbox idles: a walk of the container's files, and 50 MB held in a shell variable and let go. */
const WORKLOAD = "find / -xdev > /dev/null 2>&1; ls -lR /bin > /dev/null; x=$(head -c 50000000 /dev/zero | tr '\\0' a); echo done";

interface Measured {
  perSandboxMB: number;
  breakdown: Record<string, number>;
}

async function measure(ctrd: PrivateContainerd, config: string, count: number, tag: string, settle: () => Promise<unknown> = () => sleep(3000)): Promise<Measured> {
  const ids = Array.from({ length: count }, (_, i) => `mem-${tag}-${process.pid}-${i}`);
  try {
    for (const id of ids) {
      const r = await ctrd.ctr(['run', '-d', '--runtime', KATA, '--runtime-config-path', config, BUSYBOX_IMAGE, id, 'sleep', '3600'], { timeoutMs: 180_000 });
      if (r.code !== 0) throw new Error(`ctr run ${id}: ${r.stderr}`);
      const w = await ctrd.ctr(['task', 'exec', '--exec-id', 'work', id, 'sh', '-c', WORKLOAD], { timeoutMs: 180_000 });
      if (!w.stdout.includes('done')) throw new Error(`workload in ${id}: ${w.stderr}`);
    }
    await settle();
    // The id ends at its NUL: mem-…-1 must not also find mem-…-10.
    const trees = ids.map((id) => processTree((cmd) => cmd.includes('containerd-shim-kata-ts-v2') && cmd.includes(`-id\0${id}\0`)));
    const total = trees.reduce((sum, tree) => sum + pssMB(tree), 0);
    // One sandbox in detail: its processes by role, QEMU's by what its memory holds.
    // By the program each runs (QEMU's arguments name virtiofsd's socket).
    const program = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!.split('/').pop()!;
    const first = trees[0]!;
    const qemu = first.find((pid) => program(pid).startsWith('qemu-system'));
    const breakdown: Record<string, number> = {
      ...(qemu ? qemuPssBreakdown(qemu) : {}),
      virtiofsd: pssMB(first.filter((pid) => program(pid) === 'virtiofsd')),
      shim: pssMB(first.filter((pid) => program(pid) === 'node')),
    };
    process.stderr.write(`${tag}: ${count} sandbox(es), ${(total / count).toFixed(1)} MB each\n`);
    return { perSandboxMB: total / count, breakdown };
  } finally {
    for (const id of ids) {
      await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', id]).catch(() => undefined);
      await ctrd.ctr(['task', 'delete', '-f', id], { timeoutMs: 60_000 }).catch(() => undefined);
      await ctrd.ctr(['container', 'delete', id]).catch(() => undefined);
    }
  }
}

function readKsm(name: string): string {
  return readFileSync(join(KSM, name), 'utf8').trim();
}

/** Turns KSM on until `run` ends; undefined where this host does not let us. */
async function withKsm<T>(run: (settle: () => Promise<void>) => Promise<T>): Promise<T | undefined> {
  let before: Record<string, string>;
  try {
    before = { run: readKsm('run'), pages_to_scan: readKsm('pages_to_scan'), sleep_millisecs: readKsm('sleep_millisecs') };
    writeFileSync(join(KSM, 'pages_to_scan'), '20000');
    writeFileSync(join(KSM, 'sleep_millisecs'), '10');
    writeFileSync(join(KSM, 'run'), '1');
  } catch (err) {
    process.stderr.write(`KSM: cannot turn it on here (${(err as Error).message})\n`);
    return undefined;
  }
  try {
    // Two full scans after the sandboxes are up: what can be merged then is.
    return await run(async () => {
      const start = Number(readKsm('full_scans'));
      for (let i = 0; i < 240 && Number(readKsm('full_scans')) < start + 2; i++) await sleep(500);
    });
  } finally {
    for (const [k, v] of Object.entries(before)) writeFileSync(join(KSM, k), v);
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync('/tmp/kata-ts-bench-mem-');
  const cold = join(dir, 'cold.toml');
  const template = join(dir, 'template.toml');
  writeFileSync(cold, '[factory]\nenable_template = false\n');
  writeFileSync(template, '[factory]\nenable_template = true\n');
  const ctrd = await PrivateContainerd.start({ logLevel: 'warn' });
  try {
    await ctrd.importImage(BUSYBOX_IMAGE_TAR);
    // The template exists before anything is measured (a first use makes it).
    await ctrd.ctr(['run', '--rm', '--runtime', KATA, '--runtime-config-path', template, BUSYBOX_IMAGE, `mem-warm-${process.pid}`, 'true'], { timeoutMs: 180_000 });
    const rows: [string, Measured | undefined][] = [
      ['cold boot, 1 sandbox', await measure(ctrd, cold, 1, 'cold1')],
      ['template, 1 sandbox', await measure(ctrd, template, 1, 'tpl1')],
      [`template, ${many} sandboxes`, await measure(ctrd, template, many, `tpl${many}`)],
      [`template, ${many} sandboxes, KSM on`, await withKsm((settle) => measure(ctrd, template, many, `ksm${many}`, settle))],
    ];
    console.log(`\nkata-ts idle sandboxes after a workload (${JSON.stringify(WORKLOAD)}): PSS of QEMU + virtiofsd + shim per sandbox`);
    for (const [label, m] of rows) {
      if (!m) {
        console.log(`  ${label.padEnd(36)} (not measured: KSM cannot be turned on here)`);
        continue;
      }
      const parts = Object.entries(m.breakdown)
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(', ');
      console.log(`  ${label.padEnd(36)} ${m.perSandboxMB.toFixed(1).padStart(7)} MB   (one sandbox, MB: ${parts})`);
    }
    console.log('  targets under TCG: at most 150 MB per sandbox with 20 running (aim: under 120 MB)');
  } finally {
    await ctrd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
