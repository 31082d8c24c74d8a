// `kata-ts ps`, `logs`, `exec` and `monitor` with real sandboxes: a CRI pod
// and a plain `ctr run -d` container, each in its VM, listed by ps, the plain
// one (started with the debug console enabled) entered with exec while the
// pod (the default configuration) refuses it, and both scraped through
// `kata-ts monitor` by a real Prometheus server, whose HTTP API must then hold
// their boot and guest memory series with the sandbox's labels.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CriClient } from '../../shim/src/cri/client.js';
import type { PsReport, PsSandbox } from '../../shim/src/metrics/ps-report.js';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, REPO, type PrivateContainerd } from '../helpers/containerd.js';
import { PodFixture, startCriContainerd } from '../helpers/cri-pod.js';
import { eventually, leftovers } from '../helpers/host-state.js';
import { PrivatePrometheus, type PromSample } from '../helpers/prometheus.js';

const KATA_TS = join(REPO, 'build/bin/kata-ts');
const KATA = 'io.containerd.kata-ts.v2';

function kataTs(args: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(KATA_TS, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 137, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

/** `kata-ts monitor` on a free port of 127.0.0.1; resolves with it and its address once it serves. */
async function startMonitor(): Promise<{ process: ChildProcess; address: string }> {
  const p = spawn(KATA_TS, ['monitor', '--listen', '127.0.0.1:0', '--shim-timeout', '1500'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: p.stdout! });
  const address = await Promise.race([
    new Promise<string>((resolve) =>
      lines.on('line', (line) => {
        const served = /http:\/\/([\d.]+:\d+)\//.exec(line);
        if (served) resolve(served[1]!);
      }),
    ),
    new Promise<never>((_, reject) => p.once('exit', (code) => reject(new Error(`kata-ts monitor exited (${code})`)))),
    sleep(15_000).then(() => Promise.reject(new Error('kata-ts monitor did not say where it serves within 15 s'))),
  ]);
  return { process: p, address };
}

async function stopProcess(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((resolve) => p.once('exit', resolve));
  p.kill('SIGTERM');
  if (!(await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)]))) {
    p.kill('SIGKILL');
    await exited;
  }
}

/** Polls an instant query until it has a series, or fails with what Prometheus saw of its target. */
async function seriesOf(prom: PrivatePrometheus, promql: string, timeoutMs = 60_000): Promise<PromSample> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await prom.query(promql);
    if (result.length > 0) return result[0]!;
    if (Date.now() > deadline) throw new Error(`no series for ${promql} after ${timeoutMs} ms; targets: ${await prom.targets()}`);
    await sleep(500);
  }
}

describe('kata-ts ps, logs, exec and monitor', () => {
  let ctrd: PrivateContainerd;
  let cri: CriClient;
  let stopCri: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    ({ ctrd, cri, stop: stopCri } = await startCriContainerd());
    await ctrd.importImage(BUSYBOX_IMAGE_TAR, 'default');
  }, 90_000);

  afterAll(async () => {
    await stopCri?.();
  });

  afterEach(async () => {
    // Both sandboxes are gone with their VMs, virtiofsd, shims, mounts and run folders (endpoint sockets included).
    await eventually(() => leftovers().length === 0, 20_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
  });

  it('lists a pod and a plain container with their containers and timelines, and Prometheus scrapes their boot and guest memory with their labels', { timeout: 300_000 }, async () => {
    const pod = new PodFixture(cri, 'kata-ts');
    const plainId = `kt-mon-${process.pid}`;
    let monitor: ChildProcess | undefined;
    let prom: PrivatePrometheus | undefined;
    const configDir = mkdtempSync(join(tmpdir(), 'kata-ts-console-'));
    const consoleOn = join(configDir, 'debug-console.toml');
    writeFileSync(consoleOn, '[agent]\ndebug_console_enabled = true\n');
    try {
      await pod.run();
      const app = await pod.container('app', ['sleep', '600']);
      const started = await ctrd.ctr(['run', '-d', '--runtime', KATA, '--runtime-config-path', consoleOn, BUSYBOX_IMAGE, plainId, 'sleep', '600'], { namespace: 'default' });
      expect(started.code, started.stderr).toBe(0);

      // ps: both, found through their shims' endpoints (other sandboxes of this host may be listed too).
      let report: PsReport | undefined;
      const mine = () => ({ pod: report?.sandboxes.find((s) => s.id === pod.id), plain: report?.sandboxes.find((s) => s.id === plainId) });
      await eventually(async () => {
        const r = await kataTs(['ps', '--json']);
        expect(r.code, r.stderr).toBe(0);
        report = JSON.parse(r.stdout) as PsReport;
        return mine().pod !== undefined && mine().plain !== undefined && mine().pod!.containers.length === 2;
      }, 30_000);
      const { pod: podRow, plain: plainRow } = mine() as { pod: PsSandbox; plain: PsSandbox };
      expect(podRow).toMatchObject({ namespace: 'k8s.io', pod: { name: pod.config.metadata.name, namespace: 'e2e', uid: pod.uid } });
      expect(podRow.containers.map((c) => [c.id, c.status]).sort()).toEqual(
        [
          [pod.id, 'running'],
          [app, 'running'],
        ].sort(),
      );
      expect(plainRow).toMatchObject({ namespace: 'default', containers: [{ id: plainId, status: 'running', execs: 0 }] });
      expect(plainRow.pod).toBeUndefined();
      for (const s of [podRow, plainRow]) {
        const t = s.timeline;
        // Booted, the guest's own phases; restored from a template, the restore.
        if (t.boot === 'cold') expect(t.kernelStartMs).toBeGreaterThan(0);
        else expect(t).toMatchObject({ boot: 'template', kernelStartMs: 0, restoredMs: expect.any(Number) });
        expect(t.sandboxReadyMs).toBeGreaterThanOrEqual(t.agentAnsweredMs);
        expect(t.agentAnsweredMs).toBeGreaterThanOrEqual(t.agentListeningMs);
        expect(['kvm', 'tcg']).toContain(s.accel);
        expect(['vsock', 'serial']).toContain(s.channel);
        expect(s.processes.map((p) => p.role).sort()).toEqual(['qemu', 'shim', 'virtiofsd']);
        expect(s.hostMemoryBytes).toBeGreaterThan(10 * 1024 * 1024);
      }
      const table = await kataTs(['ps']);
      expect(table.stdout).toContain(pod.id.slice(0, 13));
      expect(table.stdout).toContain(`e2e/${pod.config.metadata.name}`);
      expect(table.stdout).toContain(plainId);

      // logs: the shim's own log from its boot on, then the guest's console (kernel, init, agent).
      const logs = await kataTs(['logs', plainId]);
      expect(logs.code).toBe(0);
      expect(logs.stdout).toMatch(/==> shim: \S+\/shim\.log <==\n[\s\S]*msg="sandbox ready"/);
      // A booted guest's console starts with the kernel; a restored one's with the agent setting up its clone.
      expect(logs.stdout).toMatch(/==> guest console \(kernel, init, agent\): \S+\/console\.log <==\n(\[ *\d+\.\d+\] |time=\S+ level=info msg="clone set up")/);
      const unknown = await kataTs(['logs', 'no-such-sandbox']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain('no-such-sandbox');

      // exec: a shell on a terminal in the guest, outside every container (the guest's init is its
      // pid 1, the containers' bundles are in view), with its exit status; refused where it is off.
      const entered = await kataTs(['exec', plainId, '--', 'sh', '-c', 'cat /proc/cmdline; cat /proc/1/comm; ls /run/kata-ts/containers; tty; exit 7']);
      expect(entered.stderr).toBe('');
      expect(entered.code).toBe(7);
      const lines = entered.stdout.split('\r\n');
      expect(lines[0]).toMatch(/kata_ts\.channel=\w+ kata_ts\.accel=(kvm|tcg)/);
      expect(lines.slice(1, 4)).toEqual(['init', plainId, expect.stringMatching(/^\/dev\/pts\/\d+$/)]);
      const refused = await kataTs(['exec', pod.id, '--', 'cat', '/proc/cmdline']);
      expect(refused).toMatchObject({ code: 125, stdout: '' });
      expect(refused.stderr).toMatch(/debug console is off; set debug_console_enabled = true in the \[agent\] section/);
      expect((await kataTs(['exec', 'no-such-sandbox'])).code).toBe(125);

      // monitor → Prometheus: the pod's series carry its sandbox and pod labels.
      const started2 = await startMonitor();
      monitor = started2.process;
      const direct = await (await fetch(`http://${started2.address}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
      expect(direct).toMatch(new RegExp(`kata_ts_agent_rpc_duration_seconds_count\\{sandbox_id="${pod.id}",[^}]*method="createContainer"`));
      prom = await PrivatePrometheus.start([started2.address]);
      const podLabels = { sandbox_id: pod.id, namespace: 'k8s.io', pod_name: pod.config.metadata.name, pod_namespace: 'e2e', pod_uid: pod.uid };
      const boot = await seriesOf(prom, `kata_ts_boot_phase_seconds{phase="sandbox_ready",sandbox_id="${pod.id}"}`);
      expect(boot.metric).toMatchObject({ ...podLabels, job: 'kata-ts' });
      expect(Number(boot.value[1])).toBeCloseTo(podRow.timeline.sandboxReadyMs / 1000, 2);
      const memory = await seriesOf(prom, `kata_ts_guest_memory_bytes{kind="available",sandbox_id="${pod.id}"}`).catch((err: Error) => {
        throw new Error(`${err.message}\n(the guest's meminfo comes from the agent's GetGuestMetrics: is build/rootfs.img built from this agent? make images)`);
      });
      expect(memory.metric).toMatchObject(podLabels);
      const total = await seriesOf(prom, `kata_ts_guest_memory_bytes{kind="total",sandbox_id="${pod.id}"}`);
      expect(Number(memory.value[1])).toBeGreaterThan(0);
      expect(Number(memory.value[1])).toBeLessThan(Number(total.value[1]));
      const appMemory = await seriesOf(prom, `kata_ts_container_memory_bytes{sandbox_id="${pod.id}",container_id="${app}"}`);
      expect(Number(appMemory.value[1])).toBeGreaterThan(0);
      // The plain container is a sandbox of its own, with no pod labels.
      const plainBoot = await seriesOf(prom, `kata_ts_boot_phase_seconds{phase="sandbox_ready",sandbox_id="${plainId}"}`);
      expect(plainBoot.metric).toMatchObject({ sandbox_id: plainId, namespace: 'default' });
      expect(plainBoot.metric['pod_name']).toBeUndefined();
      const qemuPss = await seriesOf(prom, `kata_ts_host_process_pss_bytes{process="qemu",sandbox_id="${plainId}"}`);
      expect(Number(qemuPss.value[1])).toBeGreaterThan(10 * 1024 * 1024);
    } finally {
      await prom?.stop();
      await stopProcess(monitor);
      await ctrd.ctr(['task', 'rm', '-f', plainId], { namespace: 'default' }).catch(() => undefined);
      await ctrd.ctr(['container', 'rm', plainId], { namespace: 'default' }).catch(() => undefined);
      await pod.remove();
      rmSync(configDir, { recursive: true, force: true });
    }
  });
});
