// Soak and density (not a test, not in CI): many sandboxes one after another,
// several at once, large outputs compared byte for byte, and many idle
// sandboxes side by side, through a private containerd and the real ctr. At
// the end containerd's fds and the host's processes and mounts must be where
// they started.
//   node dist/bench/soak.js [sequential=100] [parallel=8] [outputs=50] [idle=20]
import { readdirSync, readFileSync } from 'node:fs';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, PrivateContainerd } from '../test/helpers/containerd.js';
import { sandboxProcesses } from '../test/helpers/host-state.js';

const KATA = 'io.containerd.kata-ts.v2';
const [sequential = 100, parallel = 8, outputs = 50, idle = 20] = process.argv.slice(2).map(Number);
let seq = 0;
const newId = () => `soak-${process.pid}-${++seq}`;
/** `seq 1 N` prints this much: about 10 MB. */
const SEQ_LINES = 1_250_000;
const IDLE_BATCH = 4;
const expectedSeq = Buffer.from(Array.from({ length: SEQ_LINES }, (_, i) => `${i + 1}\n`).join(''));

interface Counts {
  containerdFds: number;
  processes: number;
  mounts: number;
}

function counts(ctrd: PrivateContainerd): Counts {
  return {
    containerdFds: readdirSync(`/proc/${ctrd.pid}/fd`).length,
    processes: readdirSync('/proc').filter((n) => /^\d+$/.test(n)).length,
    mounts: readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).length,
  };
}

async function phase(name: string, fn: () => Promise<number>): Promise<void> {
  const t0 = performance.now();
  const failures = await fn();
  console.log(`  ${name.padEnd(46)} ${((performance.now() - t0) / 1000).toFixed(1).padStart(7)} s   failures: ${failures}`);
}

async function main(): Promise<void> {
  const ctrd = await PrivateContainerd.start({ logLevel: 'warn' });
  try {
    await ctrd.importImage(BUSYBOX_IMAGE_TAR);
    // One run first, so the shim's code cache and the page cache are warm for the baseline counts.
    await ctrd.ctr(['run', '--rm', '--runtime', KATA, BUSYBOX_IMAGE, newId(), 'true'], { timeoutMs: 120_000 });
    await new Promise((r) => setTimeout(r, 2000));
    const before = counts(ctrd);
    console.log(`\nkata-ts soak through containerd 1.6 + ctr (TCG here)`);
    const run = (args: string[]) => ctrd.ctr(['run', '--rm', '--runtime', KATA, BUSYBOX_IMAGE, newId(), ...args], { timeoutMs: 300_000 });

    await phase(`${sequential} × ctr run --rm … true, one after another`, async () => {
      let failures = 0;
      for (let i = 0; i < sequential; i++) {
        const r = await run(['true']);
        if (r.code === 0) continue;
        failures++;
        console.log(`    failed with ${r.code}: ${r.stderr.trim().slice(0, 300)}`);
      }
      return failures;
    });
    await phase(`${parallel} × ctr run --rm … true at once`, async () => {
      const results = await Promise.all(Array.from({ length: parallel }, () => run(['true'])));
      const failed = results.filter((r) => r.code !== 0);
      for (const r of failed) console.log(`    failed with ${r.code}: ${r.stderr.trim().slice(0, 300)}`);
      return failed.length;
    });
    await phase(`${outputs} × 10 MB of output, byte for byte`, async () => {
      let failures = 0;
      for (let i = 0; i < outputs; i++) {
        const r = await run(['seq', '1', String(SEQ_LINES)]);
        if (r.code !== 0 || !r.stdout.equals(expectedSeq)) failures++;
      }
      return failures;
    });
    await phase(`${idle} idle sandboxes at once, an exec in each`, async () => {
      const ids = Array.from({ length: idle }, newId);
      // Started a few at a time (two cores emulate every boot), then all kept running side by side.
      let failures = 0;
      for (let i = 0; i < ids.length; i += IDLE_BATCH) {
        const batch = ids.slice(i, i + IDLE_BATCH);
        const started = await Promise.all(batch.map((id) => ctrd.ctr(['run', '-d', '--runtime', KATA, BUSYBOX_IMAGE, id, 'sleep', '3600'], { timeoutMs: 300_000 })));
        for (const r of started.filter((s) => s.code !== 0)) {
          failures++;
          console.log(`    failed with ${r.code}: ${r.stderr.trim().slice(0, 300)}`);
        }
      }
      const running = sandboxProcesses().filter((p) => p.cmd.includes('qemu-system')).length;
      console.log(`    ${running} VMs running side by side`);
      for (const id of ids) if ((await ctrd.ctr(['task', 'exec', '--exec-id', 'e', id, 'true'])).code !== 0) failures++;
      for (const id of ids) {
        await ctrd.ctr(['task', 'rm', '-f', id], { timeoutMs: 120_000 });
        await ctrd.ctr(['container', 'rm', id]);
      }
      return failures;
    });

    await new Promise((r) => setTimeout(r, 5000));
    const after = counts(ctrd);
    const left = sandboxProcesses();
    console.log(`  containerd fds ${before.containerdFds} → ${after.containerdFds}; host processes ${before.processes} → ${after.processes}; mounts ${before.mounts} → ${after.mounts}; sandbox processes left: ${left.length}`);
    if (after.containerdFds !== before.containerdFds || after.mounts !== before.mounts || left.length > 0) process.exitCode = 1;
  } finally {
    await ctrd.stop();
  }
}

main().catch((err: Error) => {
  console.error(`soak: ${err.message}`);
  process.exit(1);
});
