// containerd's shim logging binaries (`ctr run --log-uri binary:///path?k=v`):
// the binary gets the process's stdout on fd 3 and stderr on fd 4, closes
// fd 5 once it is ready, and is asked to finish with SIGTERM after both
// streams ended, as containerd's own shims do it. Its arguments are the
// URI's query keys, each followed by its first value; its environment holds
// only CONTAINER_ID and CONTAINER_NAMESPACE.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { exitWithin } from '../hypervisor/child.js';

const READY_TIMEOUT_MS = 10_000;
/** After both streams ended: time to exit on its own, then after SIGTERM, as containerd allows. */
const FINISH_MS = 1_000;
const TERM_MS = 12_000;

export class BinaryLoggerError extends Error {
  constructor(
    readonly uri: string,
    message: string,
  ) {
    super(`logging binary ${uri}: ${message}`);
    this.name = 'BinaryLoggerError';
  }
}

export function loggerCommand(uri: URL): { path: string; args: string[] } {
  const args: string[] = [];
  const seen = new Set<string>();
  for (const [key, value] of uri.searchParams) {
    if (seen.has(key)) continue;
    seen.add(key);
    args.push(key, value);
  }
  return { path: decodeURIComponent(uri.pathname), args };
}

export class BinaryLogger {
  private constructor(
    private readonly child: ChildProcess,
    readonly stdout: Writable,
    readonly stderr: Writable,
  ) {}

  /** Starts the binary and resolves once it said it is ready. */
  static async start(uri: URL, ids: { id: string; namespace: string }): Promise<BinaryLogger> {
    const { path, args } = loggerCommand(uri);
    const child = spawn(path, args, {
      env: { CONTAINER_ID: ids.id, CONTAINER_NAMESPACE: ids.namespace },
      stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    });
    // Node's 'pipe' for an extra fd is a socket pair: the binary reads fds 3 and 4 as it would pipes.
    const extra = child.stdio as unknown as (Readable & Writable)[];
    const stdout: Writable = extra[3]!;
    const stderr: Writable = extra[4]!;
    const ready: Readable = extra[5]!;
    const failed = new Promise<string>((resolve) => {
      child.once('error', (err) => resolve(err.message));
      child.once('exit', (code, signal) => resolve(`exited (${code ?? signal}) before it was ready`));
    });
    const readied = new Promise<void>((resolve) => {
      ready.resume();
      ready.once('end', resolve);
      ready.once('close', resolve);
    });
    const timeout = new Promise<string>((resolve) => setTimeout(() => resolve(`not ready within ${READY_TIMEOUT_MS / 1000} s`), READY_TIMEOUT_MS).unref());
    const outcome = await Promise.race([readied.then(() => undefined), failed, timeout]);
    if (outcome !== undefined) {
      child.kill('SIGKILL');
      throw new BinaryLoggerError(uri.href, outcome);
    }
    for (const s of [stdout, stderr]) s.on('error', () => undefined); // the binary died: copying stops, the process goes on
    return new BinaryLogger(child, stdout, stderr);
  }

  /** Once both streams ended: lets the binary finish, asks it with SIGTERM, and kills it if it still runs. */
  async stop(): Promise<void> {
    for (const s of [this.stdout, this.stderr]) if (!s.writableEnded) s.end();
    if (await exitWithin(this.child, FINISH_MS)) return;
    this.child.kill('SIGTERM');
    if (await exitWithin(this.child, TERM_MS)) return;
    this.child.kill('SIGKILL');
  }
}
