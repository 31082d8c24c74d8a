// `kata-ts monitor`: the metrics of every sandbox on this host behind one
// HTTP endpoint, as kata-monitor serves Kata's. Each scrape looks for the
// shims' sockets afresh, asks them all at once with one deadline each, and
// labels their samples with the sandbox and its pod. A shim that fails is
// counted and left out; it never holds up the others.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Logger } from '../../../common/log.js';
import { labelFamilies, parseExposition, renderFamilies, type LabelPairs, type MetricFamily } from './exposition.js';
import { parseSandboxStatus, type SandboxIdentity } from './sandbox-status.js';
import { findShimSockets, getFromShim, type ShimSocket } from './shim-sockets.js';

export interface HostMonitorOptions {
  runRoot: string;
  /** For each shim's answers together. */
  shimTimeoutMs: number;
  log: Logger;
}

export interface ListenAddress {
  /** undefined: every address. */
  host: string | undefined;
  port: number;
}

export class ListenAddressError extends Error {
  constructor(address: string, why: string) {
    super(`listen address ${JSON.stringify(address)}: ${why}`);
    this.name = 'ListenAddressError';
  }
}

/** HOST:PORT, [V6]:PORT or :PORT; port 0 takes a free one. */
export function parseListenAddress(address: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(address);
  if (!m) throw new ListenAddressError(address, 'expected HOST:PORT, [IPV6]:PORT or :PORT');
  const port = Number(m[3]);
  if (port > 65535) throw new ListenAddressError(address, `port ${port} is over 65535`);
  const host = m[1] ?? m[2];
  return { host: host === '' ? undefined : host, port };
}

/** The labels that say which sandbox a sample is of; pod ones only for a pod. */
export function sandboxLabels(identity: SandboxIdentity): LabelPairs {
  const labels: [string, string][] = [
    ['sandbox_id', identity.id],
    ['namespace', identity.namespace],
  ];
  if (identity.pod) labels.push(['pod_name', identity.pod.name], ['pod_namespace', identity.pod.namespace], ['pod_uid', identity.pod.uid]);
  return labels;
}

const SHIM_LABELS = ['run_folder', 'sandbox_id', 'namespace'] as const;

export class HostMonitor {
  readonly #registry = new Registry();
  readonly #sandboxes = new Gauge({ name: 'kata_ts_monitor_sandboxes', help: 'Sandbox endpoints found in the run root at the last scrape.', registers: [this.#registry] });
  readonly #up = new Gauge({
    name: 'kata_ts_monitor_sandbox_up',
    help: 'Whether the shim of each sandbox answered the last scrape in time (1) or not (0).',
    labelNames: SHIM_LABELS,
    registers: [this.#registry],
  });
  readonly #errors = new Counter({
    name: 'kata_ts_monitor_scrape_errors_total',
    help: 'Scrapes of a sandbox shim that failed or timed out (sandbox_id and namespace are empty until the shim told them).',
    labelNames: SHIM_LABELS,
    registers: [this.#registry],
  });
  readonly #duration = new Gauge({ name: 'kata_ts_monitor_scrape_duration_seconds', help: 'Time of the last scrape of all sandboxes.', registers: [this.#registry] });
  /** Who each socket belongs to: asked once per socket, as it never changes while the socket exists. */
  readonly #identities = new Map<string, { inode: number; identity: SandboxIdentity }>();

  constructor(private readonly o: HostMonitorOptions) {}

  /** Every sandbox's metrics and the monitor's own, in the Prometheus text format. */
  async scrape(): Promise<string> {
    const started = performance.now();
    const sockets = await findShimSockets(this.o.runRoot);
    for (const path of this.#identities.keys()) if (!sockets.some((s) => s.path === path)) this.#identities.delete(path);
    const families = await Promise.all(sockets.map((s) => this.#scrapeShim(s)));
    this.#sandboxes.set(sockets.length);
    this.#up.reset();
    sockets.forEach((s, i) => this.#up.set(this.#shimLabels(s), families[i] ? 1 : 0));
    this.#duration.set((performance.now() - started) / 1000);
    const own = parseExposition(await this.#registry.metrics());
    return renderFamilies([...families.filter((f): f is MetricFamily[] => f !== undefined), own]);
  }

  #shimLabels(socket: ShimSocket): Record<(typeof SHIM_LABELS)[number], string> {
    const identity = this.#identities.get(socket.path)?.identity;
    return { run_folder: socket.runFolder, sandbox_id: identity?.id ?? '', namespace: identity?.namespace ?? '' };
  }

  async #scrapeShim(socket: ShimSocket): Promise<MetricFamily[] | undefined> {
    const deadline = Date.now() + this.o.shimTimeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    try {
      let known = this.#identities.get(socket.path);
      if (known?.inode !== socket.inode) {
        known = { inode: socket.inode, identity: parseSandboxStatus(await getFromShim(socket.path, '/status', left())) };
        this.#identities.set(socket.path, known);
      }
      const text = await getFromShim(socket.path, '/metrics', left());
      return labelFamilies(parseExposition(text), sandboxLabels(known.identity));
    } catch (err) {
      this.#errors.inc(this.#shimLabels(socket));
      this.o.log.warn('cannot scrape a sandbox', { run_folder: socket.runFolder, error: (err as Error).message });
      return undefined;
    }
  }
}

/** Serves GET /metrics on the address until close(). */
export class MonitorServer {
  private constructor(private readonly server: Server) {}

  static async listen(address: ListenAddress, monitor: HostMonitor, log: Logger): Promise<MonitorServer> {
    const server = createServer((req, res) => void answer(req, res, monitor, log));
    server.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port, address.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new MonitorServer(server);
  }

  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

async function answer(req: IncomingMessage, res: ServerResponse, monitor: HostMonitor, log: Logger): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const send = (code: number, type: string, body: string) => {
    res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  if (req.method !== 'GET') return send(405, 'text/plain', 'only GET\n');
  if (path === '/') return send(200, 'text/plain', 'kata-ts monitor: the metrics of every sandbox on this host are at /metrics\n');
  if (path !== '/metrics') return send(404, 'text/plain', 'GET /metrics\n');
  try {
    send(200, 'text/plain; version=0.0.4; charset=utf-8', await monitor.scrape());
  } catch (err) {
    log.error('scrape failed', { error: (err as Error).message });
    send(500, 'text/plain', `${(err as Error).message}\n`);
  }
}
