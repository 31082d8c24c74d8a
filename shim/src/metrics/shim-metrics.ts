// The metrics of one shim's sandbox, in a prom-client registry of its own.
// Values are set from a snapshot taken at each scrape (sandbox-collector.ts);
// only the agent call times accumulate as the calls happen. Loaded at the
// first scrape: prom-client takes ~50 ms to load, which a booting sandbox
// should not wait for.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ContainerStats, GuestMetrics } from '../../../proto/gen/agent.js';
import type { AgentCallRecord } from '../sandbox/agent-call-channel.js';
import type { SandboxStatus } from './sandbox-status.js';

/** What one scrape found. guest and containerStats are missing where the guest did not answer. */
export interface SandboxSnapshot {
  status: SandboxStatus;
  guest: GuestMetrics | undefined;
  /** Whether the agent answered this scrape (one that predates GetGuestMetrics answers without figures). */
  agentAnswered: boolean;
  containerStats: ReadonlyMap<string, ContainerStats>;
  /** Agent calls of this scrape that failed. */
  guestErrors: number;
  droppedEvents: number;
}

/** The phases of each kind of start: a restored VM's guest phases happened in its template. */
const BOOT_PHASES = {
  cold: [
    ['kernel_start', 'kernelStartMs'],
    ['init', 'initMs'],
    ['agent_listening', 'agentListeningMs'],
    ['agent_answered', 'agentAnsweredMs'],
    ['sandbox_ready', 'sandboxReadyMs'],
  ],
  template: [
    ['restored', 'restoredMs'],
    ['agent_answered', 'agentAnsweredMs'],
    ['sandbox_ready', 'sandboxReadyMs'],
  ],
} as const;

const CONTAINER_STATES = ['created', 'running', 'paused', 'stopped', 'unknown'] as const;

const MEMORY_KINDS = [
  ['total', 'memTotalBytes'],
  ['free', 'memFreeBytes'],
  ['available', 'memAvailableBytes'],
  ['buffers', 'buffersBytes'],
  ['cached', 'cachedBytes'],
  ['shmem', 'shmemBytes'],
  ['containers', 'containersMemoryBytes'],
] as const;

const CPU_MODES = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'] as const;

/** From a fast reply over a socket to a call that waits out a TCG guest. */
const RPC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class ShimMetrics {
  readonly registry = new Registry();
  readonly #r = [this.registry];
  readonly #info = new Gauge({ name: 'kata_ts_sandbox_info', help: 'Always 1; how the sandbox VM runs and how it started (boot: cold or template), in its labels.', labelNames: ['accel', 'channel', 'boot'], registers: this.#r });
  readonly #startTime = new Gauge({ name: 'kata_ts_sandbox_start_time_seconds', help: 'When QEMU was spawned, in seconds since the Unix epoch.', registers: this.#r });
  readonly #bootPhase = new Gauge({ name: 'kata_ts_boot_phase_seconds', help: "Seconds from QEMU's spawn to each boot phase.", labelNames: ['phase'], registers: this.#r });
  readonly #agentRpc = new Histogram({
    name: 'kata_ts_agent_rpc_duration_seconds',
    help: 'Time of the unary calls to the guest agent that have a deadline, by method and outcome (ok or error).',
    labelNames: ['method', 'outcome'],
    buckets: RPC_BUCKETS,
    registers: this.#r,
  });
  readonly #guestMemory = new Gauge({
    name: 'kata_ts_guest_memory_bytes',
    help: "Guest memory from its /proc/meminfo (total, free, available, buffers, cached, shmem) and the memory.current of the cgroup that holds every container (containers).",
    labelNames: ['kind'],
    registers: this.#r,
  });
  readonly #guestCpu = new Counter({ name: 'kata_ts_guest_cpu_seconds_total', help: "CPU time of all guest CPUs together, by mode, from the guest's /proc/stat.", labelNames: ['mode'], registers: this.#r });
  readonly #containerMemory = new Gauge({ name: 'kata_ts_container_memory_bytes', help: "memory.current of the container's cgroup in the guest.", labelNames: ['container_id'], registers: this.#r });
  readonly #containerCpu = new Counter({ name: 'kata_ts_container_cpu_seconds_total', help: "CPU time of the container's cgroup in the guest.", labelNames: ['container_id'], registers: this.#r });
  readonly #guestErrors = new Counter({ name: 'kata_ts_guest_collect_errors_total', help: 'Agent calls for metrics that failed or timed out.', registers: this.#r });
  readonly #containers = new Gauge({ name: 'kata_ts_containers', help: 'Containers in the sandbox, by state.', labelNames: ['state'], registers: this.#r });
  readonly #execs = new Gauge({ name: 'kata_ts_execs', help: 'Exec processes known to the shim (added, running or exited but not yet deleted).', registers: this.#r });
  readonly #hostRss = new Gauge({ name: 'kata_ts_host_process_rss_bytes', help: 'Resident memory of the host processes of the sandbox.', labelNames: ['process'], registers: this.#r });
  readonly #hostPss = new Gauge({
    name: 'kata_ts_host_process_pss_bytes',
    help: 'Proportional memory of the host processes of the sandbox (guest RAM that QEMU and virtiofsd share is counted once).',
    labelNames: ['process'],
    registers: this.#r,
  });
  readonly #hostCpu = new Counter({ name: 'kata_ts_host_process_cpu_seconds_total', help: 'User and system CPU time of the host processes of the sandbox.', labelNames: ['process'], registers: this.#r });
  readonly #partUp = new Gauge({
    name: 'kata_ts_part_up',
    help: 'Whether each part of the sandbox runs: qemu and virtiofsd on the host, agent in the guest (1 when it answered this scrape). A part is never restarted: its death ends the sandbox.',
    labelNames: ['part'],
    registers: this.#r,
  });
  readonly #droppedEvents = new Counter({ name: 'kata_ts_events_dropped_total', help: 'Task events the shim could not hand to containerd.', registers: this.#r });

  observeAgentCall(call: AgentCallRecord): void {
    this.#agentRpc.observe({ method: call.method, outcome: call.ok ? 'ok' : 'error' }, call.seconds);
  }

  /** Sets every value but the call times from one scrape's snapshot. */
  update(s: SandboxSnapshot): void {
    const { status } = s;
    this.#info.reset();
    this.#info.set({ accel: status.accel, channel: status.channel, boot: status.timeline.boot }, 1);
    this.#startTime.set(Date.parse(status.startedAt) / 1000);
    this.#bootPhase.reset();
    for (const [phase, key] of BOOT_PHASES[status.timeline.boot]) this.#bootPhase.set({ phase }, (status.timeline[key] ?? 0) / 1000);

    for (const state of CONTAINER_STATES) this.#containers.set({ state }, status.containers.filter((c) => c.status === state).length);
    this.#execs.set(status.containers.reduce((n, c) => n + c.execs, 0));
    setCounter(this.#droppedEvents, {}, s.droppedEvents);
    if (s.guestErrors > 0) this.#guestErrors.inc(s.guestErrors);

    this.#hostRss.reset();
    this.#hostPss.reset();
    this.#hostCpu.reset();
    for (const p of status.processes) {
      this.#hostRss.set({ process: p.role }, p.rssBytes);
      if (p.pssBytes !== null) this.#hostPss.set({ process: p.role }, p.pssBytes);
      this.#hostCpu.inc({ process: p.role }, p.cpuSeconds);
    }
    for (const part of ['qemu', 'virtiofsd'] as const) this.#partUp.set({ part }, status.processes.some((p) => p.role === part) ? 1 : 0);
    this.#partUp.set({ part: 'agent' }, s.agentAnswered ? 1 : 0);

    this.#guestMemory.reset();
    this.#guestCpu.reset();
    if (s.guest) {
      const g = s.guest;
      for (const [kind, key] of MEMORY_KINDS) this.#guestMemory.set({ kind }, g[key]);
      for (const mode of CPU_MODES) this.#guestCpu.inc({ mode }, (g.cpu?.[`${mode}Usec`] ?? 0) / 1e6);
    }
    this.#containerMemory.reset();
    this.#containerCpu.reset();
    for (const [containerId, stats] of s.containerStats) {
      if (stats.memory) this.#containerMemory.set({ container_id: containerId }, stats.memory.usage);
      if (stats.cpu) this.#containerCpu.inc({ container_id: containerId }, stats.cpu.usageUsec / 1e6);
    }
  }

  /** The Prometheus text format. */
  async render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A counter that mirrors a total kept elsewhere: prom-client counters only go up, from 0. */
function setCounter(counter: Counter, labels: Record<string, string>, total: number): void {
  counter.reset();
  counter.inc(labels, total);
}
