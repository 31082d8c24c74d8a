// A network namespace made for a container that has not started yet, so the
// host can put its interfaces and routes in place before the container's first
// instruction runs (ctr run --cni fills the network between Create and Start).
// A guest process holds it until the container has joined it; the container's
// processes keep it alive after that.
import { spawn, type ChildProcess } from 'node:child_process';
import { failedPrecondition } from './errors.js';

const READY = 'ready\n';
const READY_TIMEOUT_MS = 10_000;

export class PreparedNetns {
  private constructor(private readonly holder: ChildProcess & { pid: number }) {}

  /** Starts the holder in a new network namespace; resolves once the namespace exists. */
  static create(): Promise<PreparedNetns> {
    // busybox unshare execs sh in the new namespace; sh brings loopback up (crun does that only in
    // a namespace it makes itself), says so, then becomes the holder.
    const holder = spawn('unshare', ['-n', 'sh', '-c', 'ip link set lo up && echo ready && exec sleep 2147483647'], { stdio: ['ignore', 'pipe', 'pipe'] });
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const fail = (why: string) => {
        clearTimeout(timer);
        holder.kill('SIGKILL');
        reject(failedPrecondition(`cannot make a network namespace for the container: ${why}${err ? `: ${err.trim()}` : ''}`));
      };
      const timer = setTimeout(() => fail(`no answer in ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
      holder.stderr!.on('data', (c: Buffer) => (err += c.toString()).length > 4096 && (err = err.slice(-4096)));
      holder.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.startsWith(READY) && holder.pid !== undefined) {
          clearTimeout(timer);
          resolve(new PreparedNetns(holder as ChildProcess & { pid: number }));
        } else if (out.length > READY.length) fail(`unexpected output ${JSON.stringify(out.slice(0, 80))}`);
      });
      holder.once('error', (e) => fail(e.message));
      holder.once('exit', (code, signal) => fail(`its holder exited (${signal ?? code})`));
    });
  }

  /** A process in the namespace, for `ip` and `nsenter`. */
  get pid(): number {
    return this.holder.pid;
  }

  /** The namespace's path, for the container's spec to join. */
  get path(): string {
    return `/proc/${this.holder.pid}/ns/net`;
  }

  /** Ends the holder: once the container has joined (or will never), nothing else needs it. */
  release(): void {
    this.holder.removeAllListeners('exit');
    this.holder.kill('SIGKILL');
  }
}
