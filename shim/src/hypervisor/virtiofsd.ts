// The virtiofsd process that serves a sandbox's shared directory to QEMU.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import { loadNative } from '../../../native/native.js';
import { exitWithin, isRunning, tail } from './child.js';
import { DIE_WITH_OWNER } from './qemu-args.js';

export interface VirtiofsdOptions {
  binary: string;
  socketPath: string;
  sharedDir: string;
  /** cache=auto|always|none */
  cache: string;
  extraArgs?: string[];
  /** Killed when the process that started it dies, SIGKILL included. */
  dieWithOwner?: boolean;
}

export class VirtiofsdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VirtiofsdError';
  }
}

/** The descriptor the listening socket has in virtiofsd (stdio takes 0 to 2). */
const LISTEN_FD = 3;

export function virtiofsdArgs(o: VirtiofsdOptions): string[] {
  return [`--fd=${LISTEN_FD}`, '-o', `source=${o.sharedDir}`, '-o', `cache=${o.cache}`, '-o', 'sandbox=namespace', ...(o.extraArgs ?? [])];
}

export class Virtiofsd {
  #exitedAt: number | undefined;

  private constructor(
    readonly process: ChildProcess,
    /** virtiofsd's stderr so far: why it exited, if it did. */
    readonly stderr: () => string,
  ) {
    process.once('exit', () => (this.#exitedAt = performance.now()));
  }

  /** performance.now() when virtiofsd exited; undefined while it runs. */
  get exitedAt(): number | undefined {
    return this.#exitedAt;
  }

  /**
   * Starts virtiofsd on a socket that already listens, so QEMU can connect as soon as it runs,
   * not once virtiofsd has started (QEMU's vhost-user handshake then waits for virtiofsd's answer).
   */
  static async start(o: VirtiofsdOptions): Promise<Virtiofsd> {
    const listening = loadNative().unixListen(o.socketPath, 1);
    let child: ChildProcess;
    try {
      const argv = [...(o.dieWithOwner ? DIE_WITH_OWNER : []), o.binary, ...virtiofsdArgs(o)];
      child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe', listening] });
    } finally {
      closeSync(listening);
    }
    const stderr = tail(child.stderr);
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new VirtiofsdError(`cannot run ${o.binary}: ${err.message}`)));
    });
    return new Virtiofsd(child, stderr);
  }

  get running(): boolean {
    return isRunning(this.process);
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
