// Small helpers for the host processes a VM owns (QEMU, virtiofsd).
import type { ChildProcess } from 'node:child_process';
import { settlesWithin } from '../../../common/settle.js';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Resolves when the child exits (also if it already has). */
export function exitOf(child: ChildProcess): Promise<ExitStatus> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: null, signal: null }));
  });
}

export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null && child.pid !== undefined;
}

/** Waits up to `ms` for the child to exit; true if it did. */
export async function exitWithin(child: ChildProcess, ms: number): Promise<boolean> {
  if (!isRunning(child)) return true;
  return settlesWithin(exitOf(child), ms);
}

/** Keeps the last `limit` bytes a stream wrote, for error messages. */
export function tail(stream: NodeJS.ReadableStream | null, limit = 4096): () => string {
  let text = '';
  stream?.on('data', (chunk: Buffer) => {
    text = (text + chunk.toString('utf8')).slice(-limit);
  });
  return () => text.trim();
}

export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 5): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
