// Sandboxes booted against a hostile agent behind a fake VMM: short deadlines,
// a private run root, and a check that a failed boot left nothing behind.
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../common/log.js';
import type { HostProbe } from '../../shim/src/hypervisor/accel.js';
import { Sandbox } from '../../shim/src/sandbox/sandbox.js';
import type { SandboxSettings } from '../../shim/src/sandbox/settings.js';
import { testSettings } from '../helpers/sandbox-harness.js';
import { fakeLaunchVmm, type Closeable, type FakeVmm } from './fake-vmm.js';

/** Deadlines small enough that every hostile case ends in a few seconds. */
export const BOOT_TIMEOUT_MS = 1500;
export const CALL_TIMEOUT_MS = 1000;
/** How long AgentClient waits, after a dropped connection, for the VM's exit before reporting the drop. */
export const VM_EXIT_GRACE_MS = 1000;
/** Slack for a loaded CI host on top of a deadline. */
export const SLACK_MS = 1500;

const NO_KVM: HostProbe = { kvmDevice: false, kvmModules: [], vhostVsock: false };
// Every boot here fails on purpose: its error records are noise unless asked for.
const log = process.env.KATA_TS_TEST_LOG === 'debug' ? createLogger({ level: 'debug' }) : createLogger({ level: 'error', write: () => undefined });

export interface HostileRoot {
  settings: SandboxSettings;
  remove(): Promise<void>;
}

/** A run root of its own, and a stand-in image file (start only stats it). */
export async function hostileRoot(): Promise<HostileRoot> {
  const dir = await mkdtemp(join(tmpdir(), 'kata-ts-hostile-'));
  const imagePath = join(dir, 'rootfs.img');
  await writeFile(imagePath, '');
  const settings = testSettings({
    runRoot: join(dir, 'run'),
    imagePath,
    accel: 'tcg',
    agentChannel: 'serial',
    networkModel: 'none',
    bootTimeoutMs: BOOT_TIMEOUT_MS,
    callTimeoutMs: CALL_TIMEOUT_MS,
    shutdownTimeoutMs: 500,
  });
  return { settings, remove: () => rm(dir, { recursive: true, force: true }) };
}

let counter = 0;

export interface Outcome<T> {
  value?: T;
  error?: unknown;
  ms: number;
}

/** How a promise settled, and after how long. */
export async function outcome<T>(promise: Promise<T>): Promise<Outcome<T>> {
  const started = performance.now();
  try {
    const value = await promise;
    return { value, ms: performance.now() - started };
  } catch (error) {
    return { error, ms: performance.now() - started };
  }
}

export interface HostileBoot {
  /** How Sandbox.start settled. */
  result: Outcome<Sandbox>;
  /** The fake VM it launched. */
  vmm: FakeVmm | undefined;
}

export async function bootAgainst(root: HostileRoot, startAgent: (socketPath: string) => Promise<Closeable>, duringBoot?: (vmm: FakeVmm) => void): Promise<HostileBoot> {
  let vmm: FakeVmm | undefined;
  const launchVmm = fakeLaunchVmm(startAgent, (v) => {
    vmm = v;
    duringBoot?.(v);
  });
  const result = await outcome(Sandbox.start(`hostile${process.pid}-${++counter}`, root.settings, log, { probe: NO_KVM, launchVmm }));
  return { result, vmm };
}

/** Every directory and mount a sandbox had under the run root; empty once it is gone. */
export async function remainsUnder(runRoot: string): Promise<string[]> {
  const entries: string[] = [];
  for (const sub of ['vm', 'shared']) {
    const names = await readdir(join(runRoot, sub)).catch(() => []);
    entries.push(...names.map((n) => join(runRoot, sub, n)));
  }
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(runRoot));
  return [...entries, ...mounts.map((m) => `mount ${m}`)];
}
