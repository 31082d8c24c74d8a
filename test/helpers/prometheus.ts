// A private Prometheus server (Debian's `prometheus`) for e2e tests: its own
// configuration and data folder in a temp folder, listening on 127.0.0.1
// only, scraping the targets given. stop() leaves no process or file.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

/** A free TCP port on 127.0.0.1 (free when asked; Prometheus takes it right after). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export class PrivatePrometheus {
  private stopping: Promise<void> | undefined;
  private readonly killOnExit = () => this.child.kill('SIGKILL');

  private constructor(
    readonly dir: string,
    readonly url: string,
    private readonly child: ChildProcess,
  ) {
    process.once('exit', this.killOnExit);
  }

  /** targets: HOST:PORT of /metrics endpoints, scraped every scrapeIntervalS. */
  static async start(targets: string[], scrapeIntervalS = 2): Promise<PrivatePrometheus> {
    const dir = await mkdtemp('/tmp/kprom-');
    const port = await freePort();
    await writeFile(
      join(dir, 'prometheus.yml'),
      `global:
  scrape_interval: ${scrapeIntervalS}s
  scrape_timeout: ${scrapeIntervalS}s
scrape_configs:
  - job_name: kata-ts
    static_configs:
      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]
`,
    );
    const logFd = openSync(join(dir, 'prometheus.log'), 'a');
    const child = spawn(
      'prometheus',
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
      { stdio: ['ignore', logFd, logFd], cwd: dir },
    );
    closeSync(logFd);
    child.on('error', () => undefined); // a missing binary shows as an exit below
    const prom = new PrivatePrometheus(dir, `http://127.0.0.1:${port}`, child);
    try {
      await prom.waitReady(30_000);
    } catch (err) {
      const log = readFileSync(join(dir, 'prometheus.log'), 'utf8').slice(-3000);
      await prom.stop();
      throw new Error(`${(err as Error).message}\n--- prometheus.log (tail) ---\n${log}`);
    }
    return prom;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`prometheus exited (${this.child.exitCode ?? this.child.signalCode})`);
      const ready = await fetch(`${this.url}/-/ready`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) return;
      await sleep(200);
    }
    throw new Error(`prometheus not ready at ${this.url} after ${timeoutMs} ms`);
  }

  /** An instant query through the HTTP API (/api/v1/query). */
  async query(promql: string): Promise<PromSample[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`, { signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: PromSample[] } };
    if (body.status !== 'success') throw new Error(`query ${promql}: ${body.error ?? res.status}`);
    return body.data?.result ?? [];
  }

  /** The state of each scrape target, for a failure message. */
  async targets(): Promise<string> {
    const res = await fetch(`${this.url}/api/v1/targets`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
    return res ? JSON.stringify(((await res.json()) as { data?: { activeTargets?: unknown } }).data?.activeTargets ?? []) : '(no answer)';
  }

  /** Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.child.exitCode === null && this.child.signalCode === null) {
        const exited = new Promise((resolve) => this.child.once('exit', resolve));
        this.child.kill('SIGTERM');
        if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) {
          this.child.kill('SIGKILL');
          await exited;
        }
      }
      process.removeListener('exit', this.killOnExit);
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.stopping;
  }
}
