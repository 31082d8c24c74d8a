// Gathers what the shim knows of its sandbox at one moment: the status that
// `kata-ts ps` shows, and for a scrape the guest's own figures. Every guest
// call has a short deadline, so a hung guest makes a scrape poorer, not late.
import { status } from '@grpc/grpc-js';
import type { ContainerStats, GuestMetrics } from '../../../proto/gen/agent.js';
import { AgentCallError } from '../sandbox/errors.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { VmmProcess } from '../hypervisor/vmm.js';
import { readProcessUsage } from './process-usage.js';
import { STATUS_VERSION, type ContainerStatus, type HostProcessRole, type HostProcessStatus, type SandboxIdentity, type SandboxStatus } from './sandbox-status.js';
import type { SandboxSnapshot } from './shim-metrics.js';

/** Each agent call of a scrape; Prometheus gives a whole scrape 10 s by default. */
export const GUEST_CALL_TIMEOUT_MS = 2000;

export interface CollectorSources {
  identity: SandboxIdentity;
  sandbox: Pick<Sandbox, 'vm' | 'agent' | 'timeline'>;
  /** The sandbox's containers as the shim's tasks know them. */
  containers: () => ContainerStatus[];
  droppedEvents: () => number;
}

const ROLE_OF: Record<VmmProcess['role'], HostProcessRole> = { vmm: 'qemu', virtiofsd: 'virtiofsd' };

export class SandboxCollector {
  /** An agent from before GetGuestMetrics answers UNIMPLEMENTED: not asked again. */
  #guestMetricsMissing = false;

  constructor(private readonly o: CollectorSources) {}

  async status(): Promise<SandboxStatus> {
    const { sandbox, identity } = this.o;
    const { accel, channel, ...timeline } = sandbox.timeline;
    const pids: { role: HostProcessRole; pid: number }[] = [
      ...sandbox.vm.processes().map((p) => ({ role: ROLE_OF[p.role], pid: p.pid })),
      { role: 'shim', pid: process.pid },
    ];
    const usages = await Promise.all(pids.map(({ pid }) => readProcessUsage(pid)));
    // A process that is gone is left out: its part is down.
    const processes: HostProcessStatus[] = pids.flatMap(({ role, pid }, i) => {
      const u = usages[i];
      return u ? [{ role, pid, rssBytes: u.rssBytes, pssBytes: u.pssBytes ?? null, cpuSeconds: u.cpuSeconds }] : [];
    });
    return {
      version: STATUS_VERSION,
      id: identity.id,
      namespace: identity.namespace,
      ...(identity.pod ? { pod: identity.pod } : {}),
      accel,
      channel,
      // spawnedAt is on this process's performance clock.
      startedAt: new Date(performance.timeOrigin + sandbox.vm.spawnedAt).toISOString(),
      timeline,
      containers: this.o.containers(),
      processes,
    };
  }

  /** The status and the guest's figures, asked of the agent in parallel. */
  async snapshot(): Promise<SandboxSnapshot> {
    let guestErrors = 0;
    const failed = () => {
      guestErrors++;
      return undefined;
    };
    const current = await this.status();
    const running = current.containers.filter((c) => c.status === 'running' || c.status === 'paused');
    const [guest, ...stats] = await Promise.all([
      this.#guestMetrics().catch(failed),
      ...running.map((c) => this.o.sandbox.agent.call('statsContainer', { containerId: c.id }, GUEST_CALL_TIMEOUT_MS).catch(failed)),
    ]);
    const containerStats = new Map<string, ContainerStats>();
    running.forEach((c, i) => stats[i] && containerStats.set(c.id, stats[i]));
    return { status: current, guest: guest?.metrics, agentAnswered: guest !== undefined, containerStats, guestErrors, droppedEvents: this.o.droppedEvents() };
  }

  /** The guest's figures, or from an agent that has none of them at least that it answered. */
  async #guestMetrics(): Promise<{ metrics: GuestMetrics | undefined }> {
    const agent = this.o.sandbox.agent;
    if (this.#guestMetricsMissing) return agent.call('check', {}, GUEST_CALL_TIMEOUT_MS).then(() => ({ metrics: undefined }));
    try {
      return { metrics: await agent.call('getGuestMetrics', {}, GUEST_CALL_TIMEOUT_MS) };
    } catch (err) {
      if (err instanceof AgentCallError && err.code === status.UNIMPLEMENTED) {
        this.#guestMetricsMissing = true;
        return { metrics: undefined };
      }
      throw err;
    }
  }
}
