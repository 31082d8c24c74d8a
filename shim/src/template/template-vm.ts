// The two halves of templating at the QEMU level. Making: boot a VM that has
// no share and no NIC, wait until its agent listens (no host ever talks to
// it: a host session would be in the saved state), pause it and save its
// device state with x-ignore-shared, so the guest RAM stays in its file and
// the rootfs image is not copied. Restoring: a VMM started with
// -incoming defer reads that state, gets the share and the NICs the template
// could not hold, and runs on.
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import { lateDeviceCommands, PASSED_FD_BASE } from '../hypervisor/qemu-args.js';
import type { QmpClient } from '../hypervisor/qmp.js';
import { QemuVm } from '../hypervisor/vm.js';
import type { VmDescription } from '../hypervisor/vm-description.js';
import { TemplateError } from './template-store.js';

/**
 * A restore that did not give a running guest. `templateAtFault`: the saved state would not load,
 * or the guest it gave never answered (the template is then removed); otherwise something of this
 * sandbox failed (its share, its NICs).
 */
export class RestoreError extends Error {
  constructor(
    message: string,
    readonly templateAtFault: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RestoreError';
  }
}

/** What the agent logs to the console once it serves its channel. */
const AGENT_LISTENING = /msg="agent listening"/;
/** After that line the agent only waits; a moment more lets the line and its timers settle. */
const SETTLE_MS = 300;
const POLL_MS = 10;
const SAVE_TIMEOUT_MS = 60_000;
const IGNORE_SHARED = { capabilities: [{ capability: 'x-ignore-shared', state: true }] };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function untilDeadline<T>(what: string, deadlineAt: number, vm: QemuVm, probe: () => Promise<T | undefined>): Promise<T> {
  let exited = false;
  void vm.exited.then(() => (exited = true));
  for (;;) {
    // A probe's own verdict ends the wait; anything else (a socket not there yet) is tried again.
    const found = await probe().catch((err: unknown) => (err instanceof TemplateError ? Promise.reject(err) : undefined));
    if (found !== undefined) return found;
    if (exited) throw new TemplateError(`QEMU exited while waiting for ${what}: ${vm.stderr() || 'no message'}`);
    if (Date.now() > deadlineAt) throw new TemplateError(`no ${what} in time`);
    await sleep(POLL_MS);
  }
}

async function consoleHas(path: string, pattern: RegExp): Promise<true | undefined> {
  const file = await open(path, 'r');
  try {
    return pattern.test(await file.readFile('utf8')) || undefined;
  } finally {
    await file.close();
  }
}

async function migrationDone(qmp: QmpClient): Promise<true | undefined> {
  const info = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
  if (info.status === 'completed') return true;
  if (info.status === 'failed' || info.status === 'cancelled') throw new TemplateError(`saving the VM failed: ${info['error-desc'] ?? info.status}`);
  return undefined;
}

export interface MakeTemplateOptions {
  /** The template VM: no share, no NICs, RAM in the template folder's ram file. */
  description: VmDescription;
  /** Its sockets and console, removed afterwards. */
  runDir: string;
  /** The template folder being made: the state is written to <dir>/state. */
  dir: string;
  bootTimeoutMs: number;
  log: Logger;
}

export async function makeTemplateVm(o: MakeTemplateOptions): Promise<{ bootMs: number; saveMs: number }> {
  const vm = await QemuVm.launch({ description: o.description, runDir: o.runDir, log: o.log });
  try {
    const deadlineAt = Date.now() + o.bootTimeoutMs;
    await untilDeadline('"agent listening" on the template VM console', deadlineAt, vm, () => consoleHas(o.description.consoleLogPath, AGENT_LISTENING));
    const bootMs = Math.round(performance.now() - vm.spawnedAt);
    await sleep(SETTLE_MS);
    const saving = performance.now();
    const qmp = await vm.qmp();
    await qmp.execute('migrate-set-capabilities', IGNORE_SHARED);
    await qmp.execute('stop');
    // QEMU 7.2 migrates to a socket, not a file: receive the stream here and write it out.
    const socketPath = join(o.runDir, 'save.sock');
    const written = new Promise<void>((resolve, reject) => {
      const server = createServer((conn) => {
        server.close();
        const out = createWriteStream(join(o.dir, 'state'), { mode: 0o600 });
        conn.pipe(out);
        out.once('finish', resolve);
        out.once('error', reject);
        conn.once('error', reject);
      });
      server.once('error', reject);
      server.listen(socketPath, () => void qmp.execute('migrate', { uri: `unix:${socketPath}` }).catch(reject));
    });
    await untilDeadline('the end of the save', Date.now() + SAVE_TIMEOUT_MS, vm, () => migrationDone(qmp));
    await written;
    return { bootMs, saveMs: Math.round(performance.now() - saving) };
  } finally {
    await vm.stop({ gracefulMs: 0 });
  }
}

/**
 * Loads the saved state into a VMM started from a clone's description, adds its late devices and
 * lets it run; ms from spawn to running. A VMM that cannot load the state exits (its stderr says why).
 */
export async function restoreVm(vm: QemuVm, d: VmDescription, timeoutMs: number): Promise<number> {
  if (!d.incoming) throw new TemplateError('the VM was not started to receive a saved one');
  const deadlineAt = Date.now() + timeoutMs;
  const loading = async () => {
    const qmp = await untilDeadline('QMP', deadlineAt, vm, () => vm.qmp());
    await qmp.execute('migrate-set-capabilities', IGNORE_SHARED);
    await qmp.execute('migrate-incoming', { uri: `fd:${PASSED_FD_BASE + d.incoming!.fdIndex}` });
    const status = await untilDeadline('the end of the restore', deadlineAt, vm, async () => {
      const { status } = await qmp.execute<{ status: string }>('query-status');
      return status === 'inmigrate' ? undefined : status;
    });
    if (status !== 'paused' && status !== 'running') throw new TemplateError(`the restored VM is ${status}`);
    return { qmp, status };
  };
  const { qmp, status } = await loading().catch((err: Error) => Promise.reject(new RestoreError(`loading the template: ${err.message}`, true, { cause: err })));
  try {
    for (const c of lateDeviceCommands(d)) await qmp.execute(c.execute, c.arguments);
    // The template was paused when it was saved, so its clone is too.
    if (status === 'paused') await qmp.execute('cont');
  } catch (err) {
    throw new RestoreError(`adding the restored VM's devices: ${(err as Error).message}`, false, { cause: err });
  }
  return Math.round(performance.now() - vm.spawnedAt);
}
