// The debug console: processes an operator runs in the guest outside every
// container (the guest's own namespaces, root filesystem and cgroup), each on
// a pty of its own. Off unless the host enabled it when it created the
// sandbox; its processes go when the sandbox is destroyed.
import type { Logger } from '../../common/log.js';
import type { NativeAddon } from '../../native/native.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound, permissionDenied } from './errors.js';
import { GuestProcess } from './guest-process.js';

const GUEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const ENV_ENTRY = /^[A-Za-z_][A-Za-z0-9_]*=/;

export interface DebugConsoleRequest {
  execId: string;
  args: readonly string[];
  env: readonly string[];
  rows: number;
  columns: number;
}

export class DebugConsoles {
  #enabled = false;
  readonly #processes = new Map<string, GuestProcess>();

  constructor(
    private readonly native: NativeAddon,
    private readonly log: Logger,
    private readonly outputFlushMs: () => number,
  ) {}

  /** Set once, by CreateSandbox. */
  enable(): void {
    this.#enabled = true;
  }

  async start(req: DebugConsoleRequest, checkId: (kind: string, id: string) => void): Promise<number> {
    if (!this.#enabled)
      throw permissionDenied('the debug console is off for this sandbox (the host enables it with agent.debug_console_enabled in its configuration)');
    checkId('exec id', req.execId);
    if (req.args.length === 0 || req.args[0] === '') throw invalidArgument('a debug console needs a program to run');
    const badEnv = req.env.find((e) => !ENV_ENTRY.test(e));
    if (badEnv !== undefined) throw invalidArgument(`environment entry ${JSON.stringify(badEnv)} is not NAME=value`);
    if (this.#processes.has(req.execId)) throw alreadyExists(`debug console process ${req.execId}`);
    const process = new GuestProcess('', req.execId, this.native, this.log, this.outputFlushMs());
    this.#processes.set(req.execId, process);
    const env: NodeJS.ProcessEnv = { PATH: GUEST_PATH, HOME: '/', TERM: 'xterm' };
    for (const entry of req.env) env[entry.slice(0, entry.indexOf('='))] = entry.slice(entry.indexOf('=') + 1);
    const size = req.rows > 0 && req.columns > 0 ? { rows: req.rows, columns: req.columns } : undefined;
    try {
      const pid = await process.startOnTerminal(req.args, env, size);
      this.log.warn('debug console process started outside every container', { exec: req.execId, command: req.args[0], pid });
      // Forgotten once it has been waited for and has gone.
      void process.wait().then((exit) => {
        this.log.info('debug console process exited', { exec: req.execId, status: exit.status });
        setTimeout(() => this.#processes.delete(req.execId), this.outputFlushMs()).unref();
      });
      return pid;
    } catch (err) {
      this.#processes.delete(req.execId);
      throw err;
    }
  }

  process(execId: string): GuestProcess {
    const p = this.#processes.get(execId);
    if (!p) throw notFound(`debug console process ${execId}`);
    return p;
  }

  signal(execId: string, signal: number, all: boolean): void {
    if (all) throw failedPrecondition('a debug console process is not in a container: signal it alone (all = false)');
    this.process(execId).signal(signal);
  }

  /** Kills every debug console process (the sandbox is going). */
  killAll(): void {
    for (const p of this.#processes.values()) p.forceKill();
  }
}
