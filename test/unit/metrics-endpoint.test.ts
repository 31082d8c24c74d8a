// A shim's endpoint and `kata-ts monitor` over real unix sockets in a temp
// folder, with a scripted sandbox in place of a VM: what a scrape gathers, the
// labels it gets, and a hung shim that must not hold the scrape up.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import type { ContainerStats, GuestMetrics } from '../../proto/gen/agent.js';
import { HostMonitor } from '../../shim/src/metrics/host-monitor.js';
import { SandboxCollector, type CollectorSources } from '../../shim/src/metrics/sandbox-collector.js';
import { parseSandboxStatus } from '../../shim/src/metrics/sandbox-status.js';
import { monitorSocketPath, ShimEndpoint } from '../../shim/src/metrics/shim-endpoint.js';
import { lazyMetrics } from '../../shim/src/metrics/shim-monitoring.js';
import { findShimSockets, getFromShim } from '../../shim/src/metrics/shim-sockets.js';
import { AgentCallRecorder, announceAgentCall } from '../../shim/src/sandbox/agent-call-channel.js';
import { AgentCallError } from '../../shim/src/sandbox/errors.js';

const log = createLogger({ level: 'error', write: () => undefined });

const GUEST: GuestMetrics = {
  memTotalBytes: 256 << 20,
  memFreeBytes: 100 << 20,
  memAvailableBytes: 180 << 20,
  buffersBytes: 1 << 20,
  cachedBytes: 30 << 20,
  shmemBytes: 2 << 20,
  cpu: { userUsec: 1_500_000, niceUsec: 0, systemUsec: 500_000, idleUsec: 9_000_000, iowaitUsec: 0, irqUsec: 0, softirqUsec: 0, stealUsec: 0 },
  cpus: 1,
  containersMemoryBytes: 12 << 20,
  containersCpuUsec: 700_000,
};

const STATS = { memory: { usage: 5 << 20 }, cpu: { usageUsec: 250_000 }, io: [] } as unknown as ContainerStats;

/** A sandbox whose VM is this test process, and whose agent answers from a script. */
function scriptedSandbox(agent: (method: string) => Promise<unknown>): CollectorSources['sandbox'] {
  return {
    timeline: { accel: 'tcg', channel: 'serial', boot: 'cold', kernelStartMs: 100, initMs: 400, agentListeningMs: 1200, agentAnsweredMs: 1500, sandboxReadyMs: 2000 },
    vm: { spawnedAt: performance.now() - 5000, processes: () => [{ role: 'vmm', pid: process.pid }] },
    agent: { call: (method: string) => agent(method) },
  } as unknown as CollectorSources['sandbox'];
}

describe('a shim endpoint behind kata-ts monitor', () => {
  let root: string;
  const closers: (() => Promise<void> | void)[] = [];

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'kata-ts-metrics-'));
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    await rm(root, { recursive: true, force: true });
  });

  async function startShim(folder: string, sources: Omit<CollectorSources, 'sandbox'>, agent: (method: string) => Promise<unknown>) {
    const runDir = join(root, 'vm', folder);
    await mkdir(runDir, { recursive: true });
    const calls = new AgentCallRecorder(sources.identity.id);
    const endpoint = await ShimEndpoint.start(monitorSocketPath(runDir), new SandboxCollector({ ...sources, sandbox: scriptedSandbox(agent) }), lazyMetrics(calls), log);
    closers.push(() => calls.close(), () => endpoint.close());
    return endpoint;
  }

  const podShim = () =>
    startShim(
      'pod1@k8s.io',
      {
        identity: { id: 'pod1', namespace: 'k8s.io', pod: { name: 'web', namespace: 'e2e', uid: 'u-1' } },
        containers: () => [
          { id: 'pod1', status: 'running', execs: 0 },
          { id: 'c1', status: 'running', execs: 1 },
        ],
        droppedEvents: () => 3,
      },
      async (method) => (method === 'getGuestMetrics' ? GUEST : STATS),
    );

  it('serves the status and the metrics of its sandbox', async () => {
    const endpoint = await podShim();
    const status = parseSandboxStatus(await getFromShim(endpoint.socketPath, '/status', 2000));
    expect(status).toMatchObject({ id: 'pod1', namespace: 'k8s.io', pod: { name: 'web' }, accel: 'tcg', containers: [{ id: 'pod1' }, { id: 'c1', execs: 1 }] });
    expect(status.processes.map((p) => [p.role, p.pid])).toEqual([
      ['qemu', process.pid],
      ['shim', process.pid],
    ]);
    expect(status.processes[0]!.rssBytes).toBeGreaterThan(0);
    expect(Date.now() - Date.parse(status.startedAt)).toBeGreaterThanOrEqual(4900);

    // Calls before the first scrape are kept until the metrics exist; another sandbox's are not this one's.
    announceAgentCall('pod1', 'check', Promise.resolve());
    announceAgentCall('other', 'check', Promise.resolve());
    await new Promise((r) => setImmediate(r));
    await getFromShim(endpoint.socketPath, '/metrics', 2000);
    announceAgentCall('pod1', 'check', Promise.reject(new Error('deadline')));
    await new Promise((r) => setImmediate(r));
    const text = await getFromShim(endpoint.socketPath, '/metrics', 2000);
    expect(text).toContain('kata_ts_boot_phase_seconds{phase="sandbox_ready"} 2');
    expect(text).toContain('kata_ts_sandbox_info{accel="tcg",channel="serial",boot="cold"} 1');
    expect(text).toContain(`kata_ts_guest_memory_bytes{kind="available"} ${180 << 20}`);
    expect(text).toContain('kata_ts_guest_cpu_seconds_total{mode="user"} 1.5');
    expect(text).toContain(`kata_ts_container_memory_bytes{container_id="c1"} ${5 << 20}`);
    expect(text).toContain('kata_ts_containers{state="running"} 2');
    expect(text).toContain('kata_ts_execs 1');
    expect(text).toContain('kata_ts_events_dropped_total 3');
    expect(text).toContain('kata_ts_part_up{part="agent"} 1');
    expect(text).toContain('kata_ts_part_up{part="virtiofsd"} 0');
    expect(text).toMatch(/kata_ts_host_process_rss_bytes\{process="shim"\} \d+/);
    // Only this sandbox's calls are timed.
    expect(text).toContain('kata_ts_agent_rpc_duration_seconds_count{method="check",outcome="ok"} 1');
    expect(text).toContain('kata_ts_agent_rpc_duration_seconds_count{method="check",outcome="error"} 1');
  });

  it('leaves out the guest figures while the agent fails, and counts the failures', async () => {
    const endpoint = await startShim(
      'c2@default',
      { identity: { id: 'c2', namespace: 'default' }, containers: () => [{ id: 'c2', status: 'running', execs: 0 }], droppedEvents: () => 0 },
      () => Promise.reject(new AgentCallError('getGuestMetrics', 4, 'deadline exceeded')),
    );
    const text = await getFromShim(endpoint.socketPath, '/metrics', 2000);
    expect(text).not.toMatch(/^kata_ts_guest_memory_bytes/m);
    expect(text).not.toMatch(/^kata_ts_container_memory_bytes/m);
    expect(text).toContain('kata_ts_guest_collect_errors_total 2');
    expect(text).toContain('kata_ts_part_up{part="agent"} 0');
  });

  it('asks an agent without GetGuestMetrics only once, and then only whether it answers', async () => {
    const asked: string[] = [];
    const endpoint = await startShim(
      'c3@default',
      { identity: { id: 'c3', namespace: 'default' }, containers: () => [], droppedEvents: () => 0 },
      async (method) => {
        asked.push(method);
        if (method === 'getGuestMetrics') throw new AgentCallError(method, 12, 'unknown method');
        return { status: 1 };
      },
    );
    let text = '';
    for (let i = 0; i < 3; i++) text = await getFromShim(endpoint.socketPath, '/metrics', 2000);
    // Later scrapes only check that it answers.
    expect(asked).toEqual(['getGuestMetrics', 'check', 'check']);
    expect(text).toContain('kata_ts_part_up{part="agent"} 1');
    expect(text).not.toMatch(/^kata_ts_guest_memory_bytes/m);
  });

  it('serves every sandbox with its labels, and a hung shim only costs its timeout', async () => {
    await podShim();
    await startShim('c2@default', { identity: { id: 'c2', namespace: 'default' }, containers: () => [], droppedEvents: () => 0 }, async () => GUEST);
    // A shim that takes connections and never answers.
    const hungDir = join(root, 'vm', 'hung@default');
    await mkdir(hungDir, { recursive: true });
    const held: Socket[] = [];
    const hung: Server = createServer((socket) => void held.push(socket));
    await new Promise<void>((r) => hung.listen(monitorSocketPath(hungDir), r));
    closers.push(() => new Promise<void>((r) => (hung.close(() => r()), held.forEach((s) => s.destroy()))));
    // A run folder with no endpoint (a booting sandbox) is no error.
    await mkdir(join(root, 'vm', 'booting@default'));

    expect((await findShimSockets(root)).map((s) => s.runFolder)).toEqual(['c2@default', 'hung@default', 'pod1@k8s.io']);
    const monitor = new HostMonitor({ runRoot: root, shimTimeoutMs: 300, log });
    const started = Date.now();
    const text = await monitor.scrape();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(text).toContain('kata_ts_boot_phase_seconds{sandbox_id="pod1",namespace="k8s.io",pod_name="web",pod_namespace="e2e",pod_uid="u-1",phase="sandbox_ready"} 2');
    expect(text).toContain(`kata_ts_guest_memory_bytes{sandbox_id="c2",namespace="default",kind="total"} ${256 << 20}`);
    expect(text.match(/^# TYPE kata_ts_boot_phase_seconds gauge$/gm)).toHaveLength(1);
    expect(text).toContain('kata_ts_monitor_sandboxes 3');
    expect(text).toContain('kata_ts_monitor_scrape_errors_total{run_folder="hung@default",sandbox_id="",namespace=""} 1');
    expect(text).toContain('kata_ts_monitor_sandbox_up{run_folder="pod1@k8s.io",sandbox_id="pod1",namespace="k8s.io"} 1');
    expect(text).toContain('kata_ts_monitor_sandbox_up{run_folder="hung@default",sandbox_id="",namespace=""} 0');
  });
});
