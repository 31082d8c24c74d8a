// The virtiofsd process that serves a sandbox's shared directory to QEMU.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { exitWithin, isRunning, tail, waitFor } from './child.js';

export interface VirtiofsdOptions {
  binary: string;
  socketPath: string;
  sharedDir: string;
  /** cache=auto|always|none */
  cache: string;
  extraArgs?: string[];
}

export class VirtiofsdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VirtiofsdError';
  }
}

export function virtiofsdArgs(o: VirtiofsdOptions): string[] {
  return [`--socket-path=${o.socketPath}`, '-o', `source=${o.sharedDir}`, '-o', `cache=${o.cache}`, '-o', 'sandbox=namespace', ...(o.extraArgs ?? [])];
}

export class Virtiofsd {
  private constructor(readonly process: ChildProcess) {}

  /** Starts virtiofsd and waits until its socket exists (QEMU connects to it as a client). */
  static async start(o: VirtiofsdOptions): Promise<Virtiofsd> {
    const child = spawn(o.binary, virtiofsdArgs(o), { stdio: ['ignore', 'ignore', 'pipe'] });
    const stderr = tail(child.stderr);
    const ready = await waitFor(() => existsSync(o.socketPath) || !isRunning(child), 5000);
    if (!ready || !isRunning(child)) {
      child.kill('SIGKILL');
      throw new VirtiofsdError(`virtiofsd did not start (${ready ? 'it exited' : 'no socket within 5 s'}): ${stderr() || 'no output'}`);
    }
    return new Virtiofsd(child);
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  /** virtiofsd exits by itself when QEMU disconnects; kill it if it has not within `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (await exitWithin(this.process, graceMs)) return;
    this.process.kill('SIGTERM');
    if (await exitWithin(this.process, 500)) return;
    this.process.kill('SIGKILL');
    await exitWithin(this.process, 5000);
  }
}
