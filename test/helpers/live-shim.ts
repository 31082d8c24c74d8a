// A real shim process, started as containerd starts one (build/bin's
// containerd-shim-kata-ts-v2 … start, in a bundle, its log read from the
// bundle's `log` FIFO), but with no sandbox to boot: only its ttrpc server and
// the Task API in front of it run. Cleaned up by stop(), whatever state the
// start got to.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { containerd } from '../../proto/gen/containerd/containerd.js';
import { fromAddress, SOCKET_ROOT, socketPath } from '../../shim/src/containerd/address.js';
import { TtrpcClient } from '../../shim/src/ttrpc/client.js';
const SHIM = join(resolve(import.meta.dirname, '../..'), 'build/bin/containerd-shim-kata-ts-v2');
const NAMESPACE = 'kata-ts-bad-input';
// containerd never sends an id like this, and for the shim it names no task whose sandbox it could
// boot ahead of Create (serve.ts): the process serves the Task API and starts no VM.
const NO_SANDBOX_ID = 'bad-input:no-sandbox';
const START_TIMEOUT_MS = 30_000;
const EXIT_TIMEOUT_MS = 5_000;

export interface ProcStatus {
  rssKiB: number;
  peakRssKiB: number;
  state: string;
}

/** VmRSS, VmHWM and State of a process; undefined once it is gone. */
export function procStatus(pid: number): ProcStatus | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  // A zombie has no memory lines: 0 then.
  const kib = (name: string) => Number.parseInt(field(name), 10) || 0;
  return { rssKiB: kib('VmRSS'), peakRssKiB: kib('VmHWM'), state: field('State') };
}

const isRunning = (pid: number) => {
  const state = procStatus(pid)?.state;
  return state !== undefined && !state.startsWith('Z');
};

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    if (isRunning(pid)) process.kill(pid, name);
  } catch {
    // exited meanwhile
  }
}

/** Processes whose command line holds `marker` (this run's own temporary folder). */
function pidsWithArgument(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').some((arg) => arg.includes(marker))) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The children of a process (a VM would be QEMU and virtiofsd). */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/** Runs the `start` action; resolves with what it printed (the address) once it exited. */
function runStart(bundle: string, containerdAddress: string, eventsAddress: string): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...process.env, TTRPC_ADDRESS: eventsAddress };
  delete env.NODE_OPTIONS; // vitest's, not containerd's
  const child = spawn(SHIM, ['-namespace', NAMESPACE, '-address', containerdAddress, '-publish-binary', '/bin/false', '-id', NO_SANDBOX_ID, 'start'], {
    cwd: bundle,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`shim start did not return within ${START_TIMEOUT_MS} ms; stderr: ${err}`));
    }, START_TIMEOUT_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0 && out !== '') resolve(out);
      else reject(new Error(`shim start exited with ${code}; stdout: ${JSON.stringify(out)} stderr: ${err}`));
    });
  });
}

export class LiveShim {
  readonly #dir = mkdtempSync(join(os.tmpdir(), 'kata-ts-bad-input-'));
  readonly #bundle = join(this.#dir, 'bundle');
  /** Only hashed into the socket's name: no containerd listens there. */
  readonly #containerdAddress = join(this.#dir, 'containerd.sock');
  readonly #socketRootExisted = existsSync(SOCKET_ROOT);
  readonly #logLines: string[] = [];
  #logFds: number[] = [];
  #logReader: net.Socket | undefined;
  #pid = 0;
  socketPath = '';

  get pid(): number {
    return this.#pid;
  }

  /** Everything the shim logged so far. */
  get log(): readonly string[] {
    return this.#logLines;
  }

  async start(): Promise<void> {
    mkdirSync(this.#bundle);
    writeFileSync(join(this.#bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2' }));
    this.#openLog();
    // Events go to a socket nobody listens on (and this shim has no task to send any of).
    const address = await runStart(this.#bundle, this.#containerdAddress, join(this.#dir, 'no-events.sock'));
    this.socketPath = fromAddress(address);
    if (this.socketPath !== socketPath(this.#containerdAddress, NAMESPACE, NO_SANDBOX_ID)) throw new Error(`unexpected shim address ${address}`);
    const client = await TtrpcClient.connect(this.socketPath);
    try {
      const info = await client.callMessage('containerd.task.v2.Task', 'Connect', containerd.task.v2.ConnectRequest, { id: NO_SANDBOX_ID }, containerd.task.v2.ConnectResponse, { timeoutMs: 5000 });
      this.#pid = info.shimPid;
    } finally {
      client.close();
    }
    if (!pidsWithArgument(this.#dir).includes(this.#pid)) throw new Error(`Connect named pid ${this.#pid}, which is not the shim just started`);
  }

  /** Asks the shim to exit (SIGTERM, as on a host shutdown), kills it if it does not, and removes what it and start() made. */
  async stop(): Promise<void> {
    const pids = new Set([...pidsWithArgument(this.#dir), ...(this.#pid > 0 ? [this.#pid] : [])]);
    for (const pid of pids) signal(pid, 'SIGTERM');
    if (!(await waitUntil(() => [...pids].every((p) => !isRunning(p)), EXIT_TIMEOUT_MS))) {
      for (const pid of pids) signal(pid, 'SIGKILL');
      await waitUntil(() => [...pids].every((p) => !isRunning(p)), EXIT_TIMEOUT_MS);
    }
    const socket = socketPath(this.#containerdAddress, NAMESPACE, NO_SANDBOX_ID);
    if (existsSync(socket)) unlinkSync(socket);
    if (!this.#socketRootExisted && existsSync(SOCKET_ROOT) && readdirSync(SOCKET_ROOT).length === 0) rmdirSync(SOCKET_ROOT);
    this.#logReader?.destroy();
    for (const fd of this.#logFds.splice(0)) closeSync(fd);
    rmSync(this.#dir, { recursive: true, force: true });
  }

  /**
   * The bundle's `log` FIFO, as containerd makes it. We hold a write end too, so the reader sees
   * no end of file before the shim opens it; the shim writes without blocking and drops lines
   * nobody reads, so it is read all along.
   */
  #openLog(): void {
    const fifo = join(this.#bundle, 'log');
    execFileSync('mkfifo', [fifo]);
    const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    this.#logFds.push(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    this.#logReader = new net.Socket({ fd: readFd, readable: true, writable: false });
    let partial = '';
    this.#logReader.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      this.#logLines.push(...lines);
    });
    this.#logReader.on('error', () => undefined);
  }
}
