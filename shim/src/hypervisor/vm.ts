// A running sandbox VM: virtiofsd plus QEMU, started from a VmDescription and
// torn down completely (processes, sockets, run directory), also when the
// launch fails half way.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import { exitOf, exitWithin, isRunning, tail, type ExitStatus } from './child.js';
import { ConsoleCap, MAX_CONSOLE_BYTES } from './console-cap.js';
import { ConsoleFollower } from './console-follower.js';
import { qemuCommand } from './qemu-args.js';
import { QmpClient } from './qmp.js';
import type { VmDescription } from './vm-description.js';
import { Virtiofsd } from './virtiofsd.js';
import type { StopOptions, VmLaunchOptions, Vmm, VmmProcess } from './vmm.js';

export const VIRTIOFSD_PIDFILE = 'virtiofsd.pid';
/** The description the VM was started from, as JSON: `kata-ts vm` renders a running sandbox's VM from it. */
export const VM_DESCRIPTION_FILE = 'vm.json';
/** How long QEMU gets to exit after virtiofsd left cleanly, before virtiofsd counts as dead under it. */
const VIRTIOFSD_FOLLOWS_MS = 1000;

export class VmError extends Error {
  constructor(
    readonly vm: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`sandbox VM ${vm}: ${message}`, options);
    this.name = 'VmError';
  }
}

/** The Vmm of QEMU: one qemu-system process, with virtiofsd beside it for the shared filesystem. */
export class QemuVm implements Vmm {
  #qmp: QmpClient | undefined;
  #stopping: Promise<void> | undefined;
  readonly exited: Promise<ExitStatus>;
  readonly #stderr: () => string;
  #exitedAt: number | undefined;
  /** At debug level the guest console (kernel, init and agent logs) goes to our log as it is written. */
  readonly #console: ConsoleFollower | undefined;
  readonly #consoleCap: ConsoleCap;

  private constructor(
    readonly name: string,
    readonly process: ChildProcess,
    readonly virtiofsd: Virtiofsd | undefined,
    readonly description: VmDescription,
    readonly runDir: string,
    /** performance.now() at spawn, the zero of the boot timeline. */
    readonly spawnedAt: number,
    private readonly log: Logger,
  ) {
    this.#stderr = tail(process.stderr);
    this.#consoleCap = new ConsoleCap(description.consoleLogPath, () => log.warn('guest console over its bound; kept its newest part', { maxBytes: MAX_CONSOLE_BYTES }));
    if (log.enabled('debug')) {
      this.#console = new ConsoleFollower(description.consoleLogPath, (line) => log.debug('guest console', { line }));
      this.#console.start();
    }
    // The guest cannot live without its shared filesystem: a virtiofsd that dies under a running
    // VM takes the VM with it, so every waiter learns at once that the sandbox is gone.
    virtiofsd?.process.once('exit', async (code, signal) => {
      // A clean exit is virtiofsd following QEMU down (the guest powered off): let QEMU finish.
      if (code === 0 && (await exitWithin(this.process, VIRTIOFSD_FOLLOWS_MS))) return;
      if (this.#stopping || !this.running) return;
      log.error('virtiofsd died under a running VM; stopping the VM', { code, signal, stderr: virtiofsd.stderr() || undefined });
      this.process.kill('SIGKILL');
    });
    this.exited = exitOf(process).then((status) => {
      this.#exitedAt = performance.now();
      const level = this.#stopping ? 'debug' : 'warn';
      log[level]('qemu exited', { code: status.code, signal: status.signal, stderr: this.#stderr() || undefined });
      return status;
    });
  }

  static async launch(o: VmLaunchOptions): Promise<QemuVm> {
    const d = o.description;
    await mkdir(o.runDir, { recursive: true, mode: 0o700 });
    let virtiofsd: Virtiofsd | undefined;
    let vm: QemuVm | undefined;
    try {
      await writeFile(join(o.runDir, VM_DESCRIPTION_FILE), `${JSON.stringify(d, null, 2)}\n`);
      if (o.virtiofsd) {
        if (!d.sharedFs) throw new VmError(d.name, 'virtiofsd given but the VM has no shared filesystem');
        virtiofsd = await Virtiofsd.start({ ...o.virtiofsd, socketPath: d.sharedFs.socketPath });
        // QEMU writes its own pidfile; virtiofsd's is ours, so a cleanup without this process can find
        // both. Written before QEMU exists, so a failure here cannot leave a QEMU behind.
        if (virtiofsd.pid) await writeFile(join(o.runDir, VIRTIOFSD_PIDFILE), String(virtiofsd.pid));
      }
      const argv = qemuCommand(d);
      o.log.debug('starting qemu', { argv: argv.join(' ') });
      const spawnedAt = performance.now();
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe', ...(o.passFds ?? [])] });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', (err) => reject(new VmError(d.name, `cannot run ${argv[0]}: ${err.message}`, { cause: err })));
      });
      vm = new QemuVm(d.name, child, virtiofsd, d, o.runDir, spawnedAt, o.log);
      // How long this process took to get here: the part of a sandbox's start-up that comes before the boot.
      const msSinceProcessStart = Math.round(spawnedAt);
      o.log.info('qemu started', { pid: child.pid, accel: d.accel, channel: d.agentChannel.kind, virtiofsd: virtiofsd?.pid, msSinceProcessStart });
      return vm;
    } catch (err) {
      await vm?.stop({ gracefulMs: 0 });
      await virtiofsd?.stop(0);
      await rm(o.runDir, { recursive: true, force: true });
      throw err;
    }
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  processes(): VmmProcess[] {
    return [
      ...(this.process.pid !== undefined ? [{ role: 'vmm' as const, pid: this.process.pid }] : []),
      ...(this.virtiofsd?.pid !== undefined ? [{ role: 'virtiofsd' as const, pid: this.virtiofsd.pid }] : []),
    ];
  }

  get running(): boolean {
    return isRunning(this.process);
  }

  /**
   * QEMU's stderr so far, which explains most early exits; and virtiofsd's when virtiofsd exited
   * first (it exits anyway once QEMU is gone, and then only reports the lost connection).
   */
  stderr(): string {
    const virtiofsdExit = this.virtiofsd?.exitedAt;
    const virtiofsdFirst = virtiofsdExit !== undefined && (this.#exitedAt === undefined || virtiofsdExit <= this.#exitedAt);
    const virtiofsd = virtiofsdFirst ? this.virtiofsd!.stderr() : '';
    return virtiofsd ? `${this.#stderr()}\nvirtiofsd exited first: ${virtiofsd}`.trim() : this.#stderr();
  }

  async qmp(): Promise<QmpClient> {
    if (!this.#qmp) {
      this.#qmp = await QmpClient.connect(this.description.qmpSocketPath);
      this.#qmp.once('close', () => (this.#qmp = undefined));
    }
    return this.#qmp;
  }

  /**
   * Graceful shutdown within a deadline, then QMP quit, then SIGKILL; then
   * virtiofsd and the run directory. Safe to call more than once.
   */
  stop(o: StopOptions): Promise<void> {
    this.#stopping ??= this.#stop(o);
    return this.#stopping;
  }

  async #stop(o: StopOptions): Promise<void> {
    const started = performance.now();
    let how = 'already exited';
    if (this.running && o.graceful) {
      const answered = o.graceful().then(
        () => true,
        (err: Error) => {
          this.log.debug('graceful shutdown request failed', { error: err.message });
          return false;
        },
      );
      // The guest has stopped its work (or powered off by itself): quitting QEMU loses nothing.
      if ((await Promise.race([answered, exitWithin(this.process, o.gracefulMs)])) || !this.running) how = 'graceful';
    }
    if (this.running) {
      if (how !== 'graceful') how = 'qmp quit';
      await this.qmp()
        .then((q) => q.execute('quit'))
        .catch(() => undefined);
      if (!(await exitWithin(this.process, 1000))) {
        how = 'killed';
        this.process.kill('SIGKILL');
        await this.exited;
      }
    }
    this.#qmp?.close();
    await this.virtiofsd?.stop(1000);
    await this.#consoleCap.stop();
    await this.#console?.close();
    await rm(this.runDir, { recursive: true, force: true });
    this.log.info('sandbox VM stopped', { how, ms: Math.round(performance.now() - started) });
  }
}

