// Monitoring of a shim's sandbox from its boot to its end: the agent calls
// are recorded from the start, and once the sandbox is up its endpoint serves
// until the VM exits. The metrics themselves load at the first scrape. Nothing
// here can fail the sandbox.
import type { Logger } from '../../../common/log.js';
import { serveDebugConsole } from '../debug-console/console-session.js';
import { AgentCallRecorder } from '../sandbox/agent-call-channel.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import { SandboxCollector } from './sandbox-collector.js';
import type { ContainerStatus, SandboxIdentity } from './sandbox-status.js';
import { monitorSocketPath, ShimEndpoint } from './shim-endpoint.js';
import type { ShimMetrics } from './shim-metrics.js';

export interface MonitoringSources {
  identity: SandboxIdentity;
  containers: () => ContainerStatus[];
  droppedEvents: () => number;
  log: Logger;
}

/** Follows a sandbox that is booting; a boot that fails leaves nothing behind. */
export function monitorSandbox(booting: Promise<Sandbox>, o: MonitoringSources): void {
  const calls = new AgentCallRecorder(o.identity.id);
  booting.then(
    (sandbox) => void serve(sandbox, calls, o),
    () => calls.close(),
  );
}

/** The sandbox's metrics, made once, with every agent call recorded so far. */
export function lazyMetrics(calls: AgentCallRecorder): () => Promise<ShimMetrics> {
  let metrics: Promise<ShimMetrics> | undefined;
  return () =>
    (metrics ??= import('./shim-metrics.js').then(({ ShimMetrics }) => {
      const m = new ShimMetrics();
      calls.attach((call) => m.observeAgentCall(call));
      return m;
    }));
}

async function serve(sandbox: Sandbox, calls: AgentCallRecorder, o: MonitoringSources): Promise<void> {
  const collector = new SandboxCollector({ identity: o.identity, sandbox, containers: o.containers, droppedEvents: o.droppedEvents });
  const socketPath = monitorSocketPath(sandbox.vm.runDir);
  let endpoint: ShimEndpoint;
  try {
    endpoint = await ShimEndpoint.start(socketPath, collector, lazyMetrics(calls), o.log, (req, socket) => serveDebugConsole(req, socket, sandbox, o.log));
  } catch (err) {
    // The VM may have gone with its run folder meanwhile.
    o.log.warn('cannot serve the sandbox metrics', { socket: socketPath, error: (err as Error).message });
    calls.close();
    return;
  }
  o.log.debug('serving the sandbox metrics', { socket: socketPath });
  void sandbox.vm.exited.then(async () => {
    calls.close();
    await endpoint.close();
  });
}
