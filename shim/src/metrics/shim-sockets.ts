// Finding the shims of this host and asking them: each running sandbox has
// its endpoint socket in its run folder, <run root>/vm/<name>/monitor.sock.
// Every request has one deadline for all of it, so a hung shim costs a
// reader that much time and no more.
import { readdir, stat } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import { MONITOR_SOCKET } from './shim-endpoint.js';

/** Far above any sandbox's metrics; a shim sending more is broken. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

export class ShimRequestError extends Error {
  constructor(
    readonly socketPath: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${socketPath}: ${message}`, options);
    this.name = 'ShimRequestError';
  }
}

export interface ShimSocket {
  path: string;
  /** The sandbox's run folder name (its name on this host, or a hash of a long one). */
  runFolder: string;
  /** Tells a new sandbox of the same name from the one seen before. */
  inode: number;
}

/** The endpoint sockets under runRoot now; a run folder without one (a sandbox still booting, a job's VM) is skipped. */
export async function findShimSockets(runRoot: string): Promise<ShimSocket[]> {
  const vmRoot = join(runRoot, 'vm');
  const entries = await readdir(vmRoot).catch(() => [] as string[]);
  const found = await Promise.all(
    entries.sort().map(async (runFolder) => {
      const path = join(vmRoot, runFolder, MONITOR_SOCKET);
      const info = await stat(path).catch(() => undefined);
      return info?.isSocket() ? { path, runFolder, inode: info.ino } : undefined;
    }),
  );
  return found.filter((s): s is ShimSocket => s !== undefined);
}

/** GET path from the shim's endpoint; the body, or ShimRequestError (also when timeoutMs passes). */
export function getFromShim(socketPath: string, path: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const signal = AbortSignal.timeout(timeoutMs);
    const late = `GET ${path}: no answer within ${timeoutMs} ms`;
    const fail = (message: string, cause?: unknown) => reject(new ShimRequestError(socketPath, signal.aborted ? late : message, { cause }));
    // No pooled connections: a reader that ends must not wait on them.
    const req = get({ socketPath, path, signal, agent: false, headers: { accept: '*/*' } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) {
          req.destroy();
          fail(`GET ${path}: the answer is over ${MAX_BODY_BYTES} bytes`);
        } else chunks.push(chunk);
      });
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode === 200) resolve(body);
        else fail(`GET ${path}: HTTP ${res.statusCode}: ${body.trim().slice(0, 200)}`);
      });
      res.on('error', (err) => fail(`GET ${path}: ${err.message}`, err));
      // Cut off in the middle (the deadline, the shim exiting): a promise settles once, so this is only the fallback.
      res.on('close', () => res.complete || fail(`GET ${path}: the answer was cut off`));
    });
    req.on('error', (err) => fail(`GET ${path}: ${err.message}`, err));
  });
}
