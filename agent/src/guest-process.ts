// One process of a container: the main one (crun run) or an exec (crun exec);
// or a debug console's, outside every container, on a pty of its own. crun
// runs in the foreground as our child, so its exit status is the process's,
// and the exit is reported only after all output was handed on.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import { once } from 'node:events';
import { constants as osConstants } from 'node:os';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import type { Logger } from '../../common/log.js';
import type { NativeAddon } from '../../native/native.js';
import { AgentError, failedPrecondition } from './errors.js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { OutputPipe } from './output-pipe.js';
import { listenConsoleSocket, socketFromFd, type ConsoleSocket } from './pty.js';
import { exitStatus } from './crun.js';
import { settlesWithin } from '../../common/settle.js';

export interface ExitInfo {
  status: number;
  exitedAtMs: number;
}

export interface LaunchSpec {
  crunBinary: string;
  crunArgs: string[];
  terminal: boolean;
  consoleSocketPath?: string;
  initialSize?: { rows: number; columns: number };
  pidFile: string;
  logFile: string;
}

const PID_FILE_POLL_MS = 5;
/** busybox's, in the guest image. */
const SETSID = '/usr/bin/setsid';
const signalNumbers = osConstants.signals as unknown as Record<string, number>;

export class GuestProcess {
  readonly stdout: OutputPipe;
  readonly stderr: OutputPipe;
  #state: 'created' | 'running' | 'exited' = 'created';
  #pid = 0;
  #stdin: Writable | undefined;
  #terminal: Socket | undefined;
  #terminalFd = -1;
  #exit: Promise<ExitInfo> | undefined;
  #waited: Promise<ExitInfo> | undefined;

  constructor(
    readonly containerId: string,
    readonly execId: string,
    private readonly native: NativeAddon,
    private readonly log: Logger,
    /** How long output may still arrive after the exit (a background child can hold it open for ever). */
    private readonly outputFlushMs: number,
  ) {
    const name = execId ? `process ${execId} of container ${containerId}` : `container ${containerId}`;
    this.stdout = new OutputPipe(`stdout of ${name}`);
    this.stderr = new OutputPipe(`stderr of ${name}`);
  }

  get pid(): number {
    return this.#pid;
  }

  get state(): 'created' | 'running' | 'exited' {
    return this.#state;
  }

  /** Spawns crun; resolves with the process's pid once it exists, or rejects with crun's own error. */
  async start(launch: LaunchSpec): Promise<number> {
    if (this.#state !== 'created') throw failedPrecondition(`${this.stdout.name.replace('stdout of ', '')} was already started`);
    this.#state = 'running';
    let consoleSocket: ConsoleSocket | undefined;
    if (launch.terminal) consoleSocket = await listenConsoleSocket(this.native, launch.consoleSocketPath!);
    const child = spawn(launch.crunBinary, launch.crunArgs, {
      stdio: launch.terminal ? ['ignore', 'ignore', 'ignore'] : ['pipe', 'pipe', 'pipe'],
    });
    this.#exit = this.#watchExit(child, 'crun');
    if (!launch.terminal) {
      this.#stdin = child.stdin!;
      this.#stdin.on('error', (err) => this.log.debug('stdin closed', { error: err.message }));
      this.stdout.setSource(child.stdout!);
      this.stderr.setSource(child.stderr!);
    } else {
      this.stderr.setNoSource();
    }

    try {
      const exited = this.#exit.then((info) => ({ exited: info }));
      if (consoleSocket) {
        const got = await Promise.race([consoleSocket.master.then((fd) => ({ fd })), exited]);
        if ('exited' in got) throw await this.#startFailure(launch, got.exited);
        this.#attachTerminal(got.fd, launch.initialSize);
      }
      this.#pid = await this.#waitForPid(launch, exited);
      return this.#pid;
    } catch (err) {
      if (!this.#terminal) this.stdout.setNoSource();
      child.kill('SIGKILL');
      throw err;
    } finally {
      await consoleSocket?.close();
    }
  }

  /**
   * Runs `args` directly, not in a container, as the leader of a new session whose controlling
   * terminal is a new pty (a debug console's shell); resolves with its pid once it runs.
   */
  async startOnTerminal(args: readonly string[], env: NodeJS.ProcessEnv, size: { rows: number; columns: number } | undefined): Promise<number> {
    if (this.#state !== 'created') throw failedPrecondition(`${this.stdout.name.replace('stdout of ', '')} was already started`);
    this.#state = 'running';
    const [master, slave] = this.native.openPty();
    // setsid -c: a new session, with stdin (the pty) as its controlling terminal, so job control and ^C work.
    const child = spawn(SETSID, ['-c', ...args], { stdio: [slave, slave, slave], env, cwd: '/' });
    closeSync(slave);
    this.#exit = this.#watchExit(child, args[0] ?? '');
    this.stderr.setNoSource();
    this.#attachTerminal(master, size);
    const started = await Promise.race([once(child, 'spawn').then(() => true), this.#exit.then(() => false)]);
    if (!started || child.pid === undefined) {
      this.#terminal?.destroy();
      throw failedPrecondition(`cannot run ${SETSID}`);
    }
    this.#pid = child.pid;
    return this.#pid;
  }

  #watchExit(child: ChildProcess, what: string): Promise<ExitInfo> {
    return new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        this.#state = 'exited';
        resolve({ status: exitStatus(code, signal, signalNumbers), exitedAtMs: Date.now() });
      });
      child.once('error', (err) => {
        this.log.error(`cannot run ${what}`, { error: err.message });
        this.#state = 'exited';
        resolve({ status: 255, exitedAtMs: Date.now() });
      });
    });
  }

  #attachTerminal(fd: number, size: { rows: number; columns: number } | undefined): void {
    this.#terminalFd = fd;
    if (size) this.native.setWindowSize(fd, size.rows, size.columns);
    const terminal = socketFromFd(fd);
    this.#terminal = terminal;
    this.#stdin = terminal;
    this.stdout.setSource(terminal);
    terminal.once('close', () => (this.#terminalFd = -1));
  }

  async #waitForPid(launch: LaunchSpec, exited: Promise<{ exited: ExitInfo }>): Promise<number> {
    let done: ExitInfo | undefined;
    void exited.then((e) => (done = e.exited));
    for (;;) {
      const text = await readFile(launch.pidFile, 'utf8').catch(() => '');
      const pid = Number.parseInt(text, 10);
      if (pid > 0) return pid;
      if (done) throw await this.#startFailure(launch, done);
      await new Promise((r) => setTimeout(r, PID_FILE_POLL_MS));
    }
  }

  async #startFailure(launch: LaunchSpec, exit: ExitInfo): Promise<AgentError> {
    const crunLog = (await readFile(launch.logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join('; ');
    return new AgentError(grpcStatus.FAILED_PRECONDITION, `crun failed to start the process (status ${exit.status}): ${crunLog || 'no message'}`);
  }

  /**
   * Exit status and time, once the process exited and its output was handed to the readers: all
   * of it up to EOF, or what came within outputFlushMs of the exit, when something the process
   * left behind keeps its output open. Then the output is cut, and the exit is never held back.
   */
  wait(): Promise<ExitInfo> {
    if (!this.#exit) throw failedPrecondition(`${this.stdout.name.replace('stdout of ', '')} was not started`);
    this.#waited ??= this.#exit.then(async (exit) => {
      if (!(await settlesWithin(Promise.all([this.stdout.done, this.stderr.done]), this.outputFlushMs))) {
        this.log.info('output still open after the exit; cut', { container: this.containerId, exec: this.execId || undefined, flushMs: this.outputFlushMs });
        this.stdout.cut();
        this.stderr.cut();
      }
      this.#terminal?.destroy();
      return exit;
    });
    return this.#waited;
  }

  /** The exit of the process itself, not waiting for its output; undefined before start. */
  get exited(): Promise<ExitInfo> | undefined {
    return this.#exit;
  }

  signal(signal: number): void {
    if (this.#state !== 'running' || this.#pid <= 0) throw failedPrecondition(`process ${this.execId || this.containerId} is not running`);
    try {
      process.kill(this.#pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') throw failedPrecondition(`process ${this.execId || this.containerId} is not running`);
      throw err;
    }
  }

  async writeStdin(data: Uint8Array): Promise<number> {
    const stdin = this.#stdin;
    if (!stdin || stdin.writableEnded || stdin.destroyed) throw failedPrecondition(`stdin of ${this.execId || this.containerId} is closed`);
    await new Promise<void>((resolve, reject) =>
      stdin.write(data, (err) => (err ? reject(failedPrecondition(`cannot write stdin: ${err.message}`)) : resolve())),
    );
    return data.length;
  }

  closeStdin(): void {
    if (this.#terminal) {
      // A terminal has no separate stdin to close: send the EOF character, as a user typing ^D would.
      if (!this.#terminal.destroyed) this.#terminal.write(Buffer.from([4]));
      return;
    }
    this.#stdin?.end();
  }

  resize(rows: number, columns: number): void {
    if (this.#terminalFd < 0) throw failedPrecondition(`process ${this.execId || this.containerId} has no terminal`);
    this.native.setWindowSize(this.#terminalFd, rows, columns);
  }

  /** Kills crun itself; used only when tearing down. */
  forceKill(): void {
    if (this.#pid > 0 && this.#state === 'running') {
      try {
        process.kill(this.#pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}
