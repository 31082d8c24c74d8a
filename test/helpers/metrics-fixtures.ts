// A sandbox status as a shim of a two-container pod would give it.
import type { SandboxStatus } from '../../shim/src/metrics/sandbox-status.js';

export const POD_ID = 'f'.repeat(64);

export function sampleStatus(over: Partial<SandboxStatus> = {}): SandboxStatus {
  return {
    version: 1,
    id: POD_ID,
    namespace: 'k8s.io',
    pod: { name: 'web', namespace: 'e2e', uid: 'uid-1' },
    accel: 'tcg',
    channel: 'serial',
    startedAt: '2026-01-01T00:00:00.000Z',
    timeline: { boot: 'cold', kernelStartMs: 120, initMs: 450, agentListeningMs: 1500, agentAnsweredMs: 1900, sandboxReadyMs: 2410 },
    containers: [
      { id: POD_ID, status: 'running', execs: 0 },
      { id: 'a'.repeat(64), status: 'running', execs: 2 },
    ],
    processes: [
      { role: 'qemu', pid: 10, rssBytes: 300 << 20, pssBytes: 200 << 20, cpuSeconds: 5.5 },
      { role: 'virtiofsd', pid: 11, rssBytes: 100 << 20, pssBytes: 4 << 20, cpuSeconds: 0.1 },
      { role: 'shim', pid: 12, rssBytes: 60 << 20, pssBytes: null, cpuSeconds: 0.8 },
    ],
    ...over,
  };
}

