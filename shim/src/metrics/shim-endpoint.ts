// A shim's endpoint: HTTP on a unix socket in its sandbox's run folder
// (root's alone), GET /metrics in Prometheus's text format and GET /status as
// JSON, which `kata-ts monitor` and `kata-ts ps` read; and the upgrade that
// opens a debug console session (`kata-ts exec`), handed to `onUpgrade`.
import { chmod, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import type { SandboxCollector } from './sandbox-collector.js';
import type { ShimMetrics } from './shim-metrics.js';

export const MONITOR_SOCKET = 'monitor.sock';

/** The endpoint's socket in a sandbox's run folder. */
export function monitorSocketPath(runDir: string): string {
  return join(runDir, MONITOR_SOCKET);
}

/** A slow reader must not hold a connection for long. */
const REQUEST_TIMEOUT_MS = 15_000;

export class ShimEndpoint {
  /** Upgraded connections, which the server no longer tracks. */
  readonly #sessions = new Set<Duplex>();
  /** One snapshot at a time: concurrent scrapes share the one under way. */
  #metricsInFlight: Promise<string> | undefined;

  private constructor(
    private readonly server: Server,
    readonly socketPath: string,
  ) {}

  /** metrics: made at the first scrape. */
  static async start(
    socketPath: string,
    collector: SandboxCollector,
    metrics: () => Promise<ShimMetrics>,
    log: Logger,
    onUpgrade?: (req: IncomingMessage, socket: Duplex) => Promise<void>,
  ): Promise<ShimEndpoint> {
    const server = createServer({ requestTimeout: REQUEST_TIMEOUT_MS });
    const endpoint = new ShimEndpoint(server, socketPath);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void endpoint.#answer(req, res, collector, metrics, log));
    // An upgraded connection is the session's: it lasts as long as the operator's shell does.
    server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
      if (!onUpgrade) return socket.destroy();
      endpoint.#sessions.add(socket);
      socket.once('close', () => endpoint.#sessions.delete(socket));
      onUpgrade(req, socket).catch((err: Error) => {
        log.warn('debug console session failed', { error: err.message });
        socket.destroy();
      });
    });
    server.on('clientError', (_err, socket) => socket.destroy());
    // A socket left by a shim that was killed would refuse the bind.
    await unlink(socketPath).catch(() => undefined);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(socketPath, 0o600);
    return endpoint;
  }

  async #answer(req: IncomingMessage, res: ServerResponse, collector: SandboxCollector, metrics: () => Promise<ShimMetrics>, log: Logger): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method !== 'GET') return reply(res, 405, 'text/plain', 'only GET\n');
      if (path === '/metrics') return reply(res, 200, (await metrics()).contentType, await this.#metrics(collector, await metrics()));
      if (path === '/status') return reply(res, 200, 'application/json', JSON.stringify(await collector.status()));
      reply(res, 404, 'text/plain', 'GET /metrics or /status\n');
    } catch (err) {
      log.warn('monitoring request failed', { path, error: (err as Error).message });
      reply(res, 500, 'text/plain', `${(err as Error).message}\n`);
    }
  }

  #metrics(collector: SandboxCollector, metrics: ShimMetrics): Promise<string> {
    this.#metricsInFlight ??= (async () => {
      metrics.update(await collector.snapshot());
      return metrics.render();
    })().finally(() => (this.#metricsInFlight = undefined));
    return this.#metricsInFlight;
  }

  /** Stops serving and removes the socket; connections still open are cut. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    for (const session of this.#sessions) session.destroy();
    await closed;
    await unlink(this.socketPath).catch(() => undefined);
  }
}

function reply(res: ServerResponse, code: number, contentType: string, body: string): void {
  if (res.headersSent) return;
  res.writeHead(code, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
