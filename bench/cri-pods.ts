// Benchmark (not a test): a Kubernetes pod's start with kata-ts against runc,
// through the same private containerd's CRI plugin and our CRI client, in one
// run: RunPodSandbox + CreateContainer + StartContainer of one container, the
// host memory of a running pod (its shim and everything below it), and TCP
// throughput into and out of a pod over the CNI bridge.
//   node dist/bench/cri-pods.js [runs]
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { CriClient, type PodSandboxConfig } from '../shim/src/cri/client.js';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, PAUSE_IMAGE_TAR, PrivateContainerd } from '../test/helpers/containerd.js';
import { processTree, pssMB } from './host-memory.js';

const runs = Number(process.argv[2] ?? process.env.BENCH_RUNS ?? 5);
const HANDLERS = { runc: /containerd-shim-runc-v2/, 'kata-ts': /containerd-shim-kata-ts-v2/ } as const;
type Handler = keyof typeof HANDLERS;
const CGROUP_PARENT = '/kata-ts-bench';
let seq = 0;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function podStart(cri: CriClient, handler: Handler, logDir: string): Promise<{ ms: number; pssMB: number }> {
  const n = ++seq;
  const config: PodSandboxConfig = {
    metadata: { name: `bench-${n}`, uid: `bench-${process.pid}-${n}`, namespace: 'bench' },
    hostname: `bench-${n}`,
    logDirectory: logDir,
    linux: { cgroupParent: CGROUP_PARENT },
  };
  const t0 = performance.now();
  const pod = await cri.runPodSandbox(config, handler);
  try {
    const c = await cri.createContainer(pod, { metadata: { name: 'main' }, image: { image: BUSYBOX_IMAGE }, command: ['sleep', '600'], logPath: `main-${n}.log` }, config);
    await cri.startContainer(c);
    const ms = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 1000));
    // runc's shim is named by the pod id too (containerd groups a pod's containers by it).
    return { ms, pssMB: pssMB(processTree((cmd) => HANDLERS[handler].test(cmd) && cmd.includes(pod))) };
  } finally {
    await cri.stopPodSandbox(pod);
    await cri.removePodSandbox(pod);
  }
}

const MB = 1_000_000;
const TRANSFER_BYTES = 100 * MB;
/** The CNI bridge's own address on the host (test/helpers/containerd.ts sets the network up). */
const BRIDGE_IP = '10.88.0.1';

/** Sends `bytes` to ip:port and closes; rejects if the connection fails. */
function pushToPod(ip: string, port: number, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(MB, 7);
    const s = net.connect({ host: ip, port }, () => {
      let left = bytes;
      const write = () => {
        while (left > 0) {
          left -= chunk.length;
          if (!s.write(chunk)) return void s.once('drain', write);
        }
        s.end();
      };
      write();
    });
    s.on('error', reject);
    s.on('close', (hadError) => (hadError ? reject(new Error('the connection failed')) : resolve()));
  });
}

/** Listens on the bridge address; seconds from the pod's first byte to its last, and how many. */
function receiveFromPod(port: number, start: () => Promise<unknown>): Promise<{ seconds: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => {
      let bytes = 0;
      let t0 = 0;
      s.on('data', (d: Buffer) => {
        if (t0 === 0) t0 = performance.now();
        bytes += d.length;
      });
      s.on('close', () => {
        server.close();
        resolve({ seconds: (performance.now() - t0) / 1000, bytes });
      });
    });
    server.on('error', reject);
    server.listen(port, BRIDGE_IP, () => void start().catch(reject));
  });
}

/** TCP throughput into and out of a running pod, in Mbit/s. */
async function podThroughput(cri: CriClient, handler: Handler, logDir: string): Promise<{ inMbit: number; outMbit: number }> {
  const n = ++seq;
  const config: PodSandboxConfig = { metadata: { name: `bench-net-${n}`, uid: `bench-net-${process.pid}-${n}`, namespace: 'bench' }, logDirectory: logDir, linux: { cgroupParent: CGROUP_PARENT } };
  const pod = await cri.runPodSandbox(config, handler);
  try {
    const sink = await cri.createContainer(pod, { metadata: { name: 'sink' }, image: { image: BUSYBOX_IMAGE }, command: ['sleep', '600'] }, config);
    await cri.startContainer(sink);
    const ip = ((await cri.podSandboxStatus(pod)).status as { network: { ip: string } }).network.ip;
    // The pod counts what it received: the time runs until it has it all.
    const t0 = performance.now();
    // busybox nc drops the connection once its stdin ends: give it one that stays open, from a
    // process that holds none of the exec's output open (the exec ends when its output does).
    const received = cri.execSync(sink, ['sh', '-c', 'mkfifo /tmp/in && { sleep 600 > /tmp/in 2>/dev/null & } && nc -l -p 9000 < /tmp/in | wc -c'], 120);
    for (let tries = 0; ; tries++) {
      const sent = await pushToPod(ip, 9000, TRANSFER_BYTES).then(() => true, () => false);
      if (sent) break;
      if (tries > 100) throw new Error(`${handler}: the pod never listened on ${ip}:9000`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const count = Number((await received).stdout.toString().trim());
    const inSeconds = (performance.now() - t0) / 1000;
    if (count !== TRANSFER_BYTES) throw new Error(`${handler}: the pod got ${count} of ${TRANSFER_BYTES} bytes`);
    const port = 19000 + n;
    const out = await receiveFromPod(port, () => cri.execSync(sink, ['sh', '-c', `dd if=/dev/zero bs=1000000 count=100 2>/dev/null | nc ${BRIDGE_IP} ${port}`], 600));
    if (out.bytes !== TRANSFER_BYTES) throw new Error(`${handler}: the host got ${out.bytes} of ${TRANSFER_BYTES} bytes from the pod`);
    return { inMbit: (TRANSFER_BYTES * 8) / MB / inSeconds, outMbit: (TRANSFER_BYTES * 8) / MB / out.seconds };
  } finally {
    await cri.stopPodSandbox(pod);
    await cri.removePodSandbox(pod);
  }
}

async function main(): Promise<void> {
  const ctrd = await PrivateContainerd.start({ cri: true, namespace: 'k8s.io', logLevel: 'warn' });
  const logDir = mkdtempSync('/tmp/kata-ts-bench-pods-');
  const cri = CriClient.connect(ctrd.address);
  try {
    await ctrd.importImage(PAUSE_IMAGE_TAR);
    await ctrd.importImage(BUSYBOX_IMAGE_TAR);
    const results = {} as Record<Handler, { ms: number; pssMB: number; inMbit: number; outMbit: number }>;
    for (const handler of Object.keys(HANDLERS) as Handler[]) {
      const samples: { ms: number; pssMB: number }[] = [];
      for (let i = 0; i < runs; i++) samples.push(await podStart(cri, handler, logDir));
      const net = await podThroughput(cri, handler, logDir);
      results[handler] = { ms: median(samples.map((s) => s.ms)), pssMB: median(samples.map((s) => s.pssMB)), ...net };
      process.stderr.write(`${handler}: pod start ${samples.map((s) => Math.round(s.ms)).join(' ')} ms; TCP in ${net.inMbit.toFixed(0)}, out ${net.outMbit.toFixed(0)} Mbit/s\n`);
    }
    const r = results.runc;
    const k = results['kata-ts'];
    const row = (label: string, a: number, b: number, unit: string, digits = 0) =>
      `  ${label.padEnd(44)} ${a.toFixed(digits).padStart(9)} ${b.toFixed(digits).padStart(9)}  ${unit.padEnd(4)} ${(b / a).toFixed(2).padStart(6)}x`;
    console.log(`\nCRI pods, kata-ts vs runc through containerd 1.6's CRI plugin, median of ${runs} (kata-ts under TCG here)`);
    console.log(`  ${''.padEnd(44)} ${'runc'.padStart(9)} ${'kata-ts'.padStart(9)}  ${''.padEnd(4)} ${'ratio'.padStart(7)}`);
    console.log(row('RunPodSandbox + create + start of 1 container', r.ms, k.ms, 'ms'));
    console.log(row('host PSS of a running pod (shim and below)', r.pssMB, k.pssMB, 'MB', 1));
    console.log(row('TCP host → pod, 100 MB (nc | wc in the pod)', r.inMbit, k.inMbit, 'Mb/s'));
    console.log(row('TCP pod → host, 100 MB (dd | nc in the pod)', r.outMbit, k.outMbit, 'Mb/s'));
  } finally {
    cri.close();
    await ctrd.stop();
    rmSync(logDir, { recursive: true, force: true });
    execFileSync('sh', ['-c', `for d in /sys/fs/cgroup/*${CGROUP_PARENT}; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + ; done; true`]);
  }
}

main().catch((err: Error) => {
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
