// Brings a sandbox's VM up to an agent that has created the sandbox: restored
// from a template when templating is on and one fits, else (or when the
// restore fails, with the reason logged) booted cold. Either way the caller
// gets the VM, its agent client and the boot timeline, or an error with
// nothing of the VM left.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type net from 'node:net';
import type { Logger } from '../../../common/log.js';
import { startVsockProxy } from '../../../native/vsock-proxy.js';
import type { NativeAddon } from '../../../native/native.js';
import { QemuVm } from '../hypervisor/vm.js';
import type { VmDescription } from '../hypervisor/vm-description.js';
import type { LaunchVmm, Vmm } from '../hypervisor/vmm.js';
import { cloneDescription, templateFor, type TemplateChoice } from '../template/sandbox-template.js';
import { RestoreError, restoreVm } from '../template/template-vm.js';
import type { AgentClient } from './agent-client.js';
import type { SandboxSettings } from './settings.js';
import { AGENT_SOCKET_FILE, SHARED_FS_TAG } from './vm-plan.js';

export const AGENT_VSOCK_PORT = 1024;
/** A restored guest answers within a second here; one that does not within this is taken as a failed restore. */
const RESTORE_ANSWER_MS = 20_000;

/** Milliseconds from QEMU spawn (host clock) to each boot phase. */
export interface BootTimeline {
  accel: string;
  channel: string;
  /** 'cold': the kernel booted; 'template': the VM was restored (the guest phases then happened in the template, and are 0). */
  boot: 'cold' | 'template';
  kernelStartMs: number;
  initMs: number;
  agentListeningMs: number;
  /** Template only: the saved state loaded, the share and NICs added, the VM running. */
  restoredMs?: number;
  agentAnsweredMs: number;
  sandboxReadyMs: number;
}

export interface BootRequest {
  id: string;
  description: VmDescription;
  settings: SandboxSettings;
  native: NativeAddon;
  sharedDir: string;
  vmDir: string;
  tapFds: readonly number[];
  launchVmm?: LaunchVmm;
  onLaunched?: () => void;
  signal?: AbortSignal;
  /** Rejects when the signal aborts. */
  aborted: Promise<never>;
  dieWithOwner?: boolean;
  log: Logger;
}

export interface BootedVm {
  vm: Vmm;
  agent: AgentClient;
  proxy: net.Server | undefined;
  timeline: BootTimeline;
}

export async function bootVm(r: BootRequest): Promise<BootedVm> {
  // A VMM other than QEMU (the tests' scripted ones) has no saved state to load.
  const choice = r.settings.templateEnabled && !r.launchVmm ? await templateFor({ description: r.description, templatePath: r.settings.templatePath, runRoot: r.settings.runRoot, bootTimeoutMs: r.settings.bootTimeoutMs, log: r.log }) : undefined;
  r.signal?.throwIfAborted();
  if (choice) {
    try {
      return await restoreFrom(r, choice);
    } catch (err) {
      // Only the restore's own failures fall back: one of this sandbox's (its run folder, its
      // virtiofsd) would fail a cold boot just the same, and is reported as it is.
      if (r.signal?.aborted || !(err instanceof RestoreError)) throw err;
      r.log.warn('restore from the sandbox template failed; booting cold', { key: choice.template.key, error: err.message });
      // The next sandbox makes it again.
      if (err.templateAtFault) await choice.store.discard(choice.template.key, `restoring from it failed: ${err.message}`);
    }
  }
  return coldBoot(r);
}

function virtiofsdOptions(r: BootRequest) {
  return { binary: r.settings.virtiofsdBinary, sharedDir: r.sharedDir, cache: r.settings.virtiofsCache, ...(r.dieWithOwner ? { dieWithOwner: true } : {}) };
}

async function coldBoot(r: BootRequest): Promise<BootedVm> {
  const vm = await (r.launchVmm ?? QemuVm.launch)({
    description: r.description,
    runDir: r.vmDir,
    virtiofsd: virtiofsdOptions(r),
    ...(r.tapFds.length > 0 ? { passFds: r.tapFds } : {}),
    log: r.log,
  });
  return withAgent(r, vm, r.description, async (agent, answered) => {
    const details = await agent.call('getGuestDetails', {});
    const detailsAt = performance.now();
    // The guest clock starts with the kernel; the reply's uptime was read about midway through the call.
    const kernelStart = (answered + detailsAt) / 2 - details.uptimeMs - vm.spawnedAt;
    return {
      boot: 'cold',
      kernelStartMs: Math.round(kernelStart),
      initMs: Math.round(kernelStart + details.initUptimeMs),
      agentListeningMs: Math.round(kernelStart + details.agentListeningUptimeMs),
    };
  });
}

async function restoreFrom(r: BootRequest, { template }: TemplateChoice): Promise<BootedVm> {
  const description = cloneDescription(r.description, r.tapFds.length);
  // The clone's RAM: its own shared memfd, filled from the template's (only the pages it holds).
  const ramFd = r.native.memfdFromFile(template.ramPath, 'kata-ts-guest-ram');
  let stateFd: number | undefined;
  let vm: QemuVm | undefined;
  try {
    stateFd = openSync(template.statePath, 'r');
    vm = await QemuVm.launch({ description, runDir: r.vmDir, virtiofsd: virtiofsdOptions(r), passFds: [...r.tapFds, ramFd, stateFd], log: r.log });
  } finally {
    // QEMU holds its own copies now.
    closeSync(ramFd);
    if (stateFd !== undefined) closeSync(stateFd);
  }
  const launched = vm;
  let restoredMs = 0;
  try {
    restoredMs = await Promise.race([restoreVm(launched, description, RESTORE_ANSWER_MS), r.aborted]);
  } catch (err) {
    await launched.stop({ gracefulMs: 0 });
    throw err;
  }
  r.log.info('sandbox VM restored from its template', { key: template.key, restoredMs });
  let answered = false;
  try {
    return await withAgent(
      r,
      launched,
      description,
      async (agent) => {
        answered = true;
        const setup = await agent.call('setupClone', {
          entropy: randomBytes(64),
          wallClockMs: Date.now(),
          macs: (description.networks ?? []).map((n) => n.mac),
          sharedFs: description.sharedFs !== undefined,
        });
        r.log.debug('clone set up', { devicesWaitMs: setup.devicesWaitMs });
        return { boot: 'template', kernelStartMs: 0, initMs: 0, agentListeningMs: 0, restoredMs };
      },
      RESTORE_ANSWER_MS,
    );
  } catch (err) {
    if (r.signal?.aborted) throw err;
    // A guest that never answers is the template's doing; a later failure is this sandbox's.
    throw new RestoreError(`the restored guest: ${(err as Error).message}`, !answered, { cause: err });
  }
}

type GuestPhases = Pick<BootTimeline, 'boot' | 'kernelStartMs' | 'initMs' | 'agentListeningMs' | 'restoredMs'>;

/**
 * From a running VMM to a created sandbox: the agent's channel, its first answer, what the boot
 * kind needs (`phases`), CreateSandbox. On failure the VM is stopped.
 */
async function withAgent(r: BootRequest, vm: Vmm, d: VmDescription, phases: (agent: AgentClient, answeredAt: number) => Promise<GuestPhases>, answerWithinMs = r.settings.bootTimeoutMs): Promise<BootedVm> {
  let proxy: net.Server | undefined;
  let agent: AgentClient | undefined;
  try {
    r.onLaunched?.();
    const agentSocket = join(r.vmDir, AGENT_SOCKET_FILE);
    if (d.agentChannel.kind === 'vsock') proxy = await startVsockProxy(r.native, agentSocket, d.agentChannel.guestCid, AGENT_VSOCK_PORT);
    // Loaded while the guest boots: grpc-js and the agent API take ~130 ms to load, and QEMU should not wait for them.
    const { AgentClient } = await import('./agent-client.js');
    agent = new AgentClient({
      sandboxId: r.id,
      socketPath: agentSocket,
      vmExited: vm.exited,
      deathDetail: () => vm.stderr() || 'see the guest console log',
      defaultTimeoutMs: r.settings.callTimeoutMs,
    });
    await Promise.race([agent.waitReady(Date.now() + answerWithinMs, answerWithinMs), r.aborted]);
    r.signal?.throwIfAborted();
    const answered = performance.now();
    const guest = await phases(agent, answered);
    await agent.call('createSandbox', {
      sandboxId: r.id,
      hostname: '',
      sharedFsTag: SHARED_FS_TAG,
      outputFlushMs: r.settings.outputFlushMs,
      debugConsoleEnabled: r.settings.debugConsoleEnabled,
    });
    r.signal?.throwIfAborted();
    const ready = performance.now();
    const timeline: BootTimeline = {
      accel: d.accel,
      channel: d.agentChannel.kind,
      ...guest,
      agentAnsweredMs: Math.round(answered - vm.spawnedAt),
      sandboxReadyMs: Math.round(ready - vm.spawnedAt),
    };
    return { vm, agent, proxy, timeline };
  } catch (err) {
    // Read before the stop, which removes the VM's folder with its console.
    const consoleTail = await readFile(d.consoleLogPath, 'utf8').catch(() => '');
    r.log.warn('sandbox VM did not come up', { boot: d.incoming ? 'template' : 'cold', error: (err as Error).message, console: consoleTail.slice(-2000) || undefined });
    agent?.close();
    proxy?.close();
    await vm.stop({ gracefulMs: 0 });
    throw err;
  }
}
