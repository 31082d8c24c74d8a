// Starts real sandboxes from the images in build/ and checks that nothing of
// them is left afterwards.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createLogger } from '../../common/log.js';
import { ensureRunRoot, Sandbox, type StartOptions } from '../../shim/src/sandbox/sandbox.js';
import { DEFAULT_SETTINGS, type SandboxSettings } from '../../shim/src/sandbox/settings.js';

export const REPO = resolve(import.meta.dirname, '../..');
export const BUSYBOX_ROOTFS = join(REPO, 'build/busybox-rootfs');

export function testSettings(overrides: Partial<SandboxSettings> = {}): SandboxSettings {
  return {
    ...DEFAULT_SETTINGS,
    kernelPath: join(REPO, 'build/vmlinux'),
    imagePath: join(REPO, 'build/rootfs.img'),
    runRoot: '/run/kata-ts-test',
    bootTimeoutMs: 60_000,
    ...overrides,
  };
}

const log = createLogger({ level: process.env.KATA_TS_TEST_LOG === 'debug' ? 'debug' : 'error' });
let counter = 0;

export async function startSandbox(overrides: Partial<SandboxSettings> = {}, options: StartOptions = {}): Promise<Sandbox> {
  const settings = testSettings(overrides);
  await ensureRunRoot(settings);
  return Sandbox.start(`t${process.pid}-${++counter}`, settings, log, options);
}

/** Every process, mount, socket and directory the sandbox had; all must be gone after stop(). */
export interface Remains {
  processes: string[];
  mounts: string[];
  paths: string[];
}

export function remainsOf(sandbox: Sandbox, settings = testSettings()): Remains {
  const pids = sandbox.vm.processes().map((p) => p.pid);
  const processes = pids.filter((pid) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z '));
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(settings.runRoot) && m.includes(sandbox.id));
  const paths = [sandbox.vm.runDir, join(settings.runRoot, 'shared', sandbox.id)].filter((p) => existsSync(p));
  return { processes: processes.map((p) => `pid ${p}: ${execFileSync('ps', ['-o', 'args=', '-p', String(p)]).toString().trim()}`), mounts, paths };
}

export async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
