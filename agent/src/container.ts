// A container in the guest: its bundle, its main process and its execs.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/log.js';
import type { NativeAddon } from '../../native/native.js';
import type { ContainerStats, ProcessInfo } from '../../proto/gen/agent.js';
import { readContainerStats } from './cgroup-stats.js';
import * as crun from './crun.js';
import { runCrun } from './crun-runner.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from './errors.js';
import { checkExecutable } from './exec-lookup.js';
import { GuestProcess, type ExitInfo } from './guest-process.js';
import { guestProcess, validateProcess } from './guest-spec.js';
import type { OciProcess, OciSpec } from './oci-spec.js';
import { settlesWithin } from '../../common/settle.js';
import { PreparedNetns } from './prepared-netns.js';

export interface ContainerPaths {
  crun: crun.CrunPaths;
  /** Where bundles and per-process files live. */
  bundleDir: string;
  /** The cgroup v2 directory of this container. */
  cgroupDir: string;
}

const MAIN = '';

export class Container {
  readonly #processes = new Map<string, GuestProcess>();
  /** The network namespace made for it before it started, if the host configured its network then. */
  #preparedNetns: Promise<PreparedNetns> | undefined;

  private constructor(
    readonly id: string,
    readonly spec: OciSpec,
    private readonly paths: ContainerPaths,
    private readonly native: NativeAddon,
    private readonly log: Logger,
    private readonly outputFlushMs: number,
  ) {
    this.#processes.set(MAIN, new GuestProcess(id, MAIN, native, log, outputFlushMs));
  }

  /** Writes the guest bundle and checks that the process can be run. */
  static async create(id: string, spec: OciSpec, paths: ContainerPaths, native: NativeAddon, log: Logger, outputFlushMs: number): Promise<Container> {
    const rootfs = spec.root!.path;
    const process = spec.process!;
    await checkExecutable(rootfs, process.args![0]!, process.env, process.cwd);
    await mkdir(paths.bundleDir, { recursive: true });
    await writeFile(join(paths.bundleDir, 'config.json'), JSON.stringify(spec));
    return new Container(id, spec, paths, native, log, outputFlushMs);
  }

  get main(): GuestProcess {
    return this.#processes.get(MAIN)!;
  }

  process(execId: string): GuestProcess {
    const p = this.#processes.get(execId);
    if (!p) throw notFound(execId ? `process ${execId} in container ${this.id}` : `container ${this.id}`);
    return p;
  }

  #files(execId: string) {
    const stem = execId ? `exec-${execId}` : 'main';
    const dir = this.paths.bundleDir;
    return {
      pidFile: join(dir, `${stem}.pid`),
      logFile: join(dir, `${stem}.crun.log`),
      consoleSocket: join(dir, `${stem}.console.sock`),
      processFile: join(dir, `${stem}.process.json`),
    };
  }

  #terminalSize(process: OciProcess) {
    return process.consoleSize ? { rows: process.consoleSize.height, columns: process.consoleSize.width } : undefined;
  }

  /**
   * A process whose network namespace is this container's: its own once it runs; before it starts,
   * the holder of a namespace made for it, which it joins when it starts.
   */
  async networkPid(): Promise<number> {
    if (this.main.state === 'running' && this.main.pid > 0) return this.main.pid;
    if (this.main.state !== 'created') throw failedPrecondition(`container ${this.id} has exited: its network namespace is gone`);
    const network = this.#networkNamespace;
    if (!network || network.path) throw failedPrecondition(`container ${this.id} has no network namespace of its own to configure`);
    this.#preparedNetns ??= PreparedNetns.create();
    return (await this.#preparedNetns).pid;
  }

  async start(): Promise<number> {
    const prepared = await this.#preparedNetns?.catch(() => undefined);
    if (!prepared) return this.#run();
    try {
      this.#networkNamespace!.path = prepared.path;
      await writeFile(join(this.paths.bundleDir, 'config.json'), JSON.stringify(this.spec));
      return await this.#run();
    } finally {
      // Joined (or failed): the container's processes hold the namespace now.
      this.#releaseNetns();
    }
  }

  get #networkNamespace() {
    return this.spec.linux?.namespaces?.find((ns) => ns.type === 'network');
  }

  #releaseNetns(): void {
    void this.#preparedNetns?.then((n) => n.release(), () => undefined);
    this.#preparedNetns = undefined;
  }

  async #run(): Promise<number> {
    const files = this.#files(MAIN);
    const terminal = this.spec.process!.terminal === true;
    const args = crun.runArgs(this.paths.crun, {
      containerId: this.id,
      bundle: this.paths.bundleDir,
      pidFile: files.pidFile,
      logFile: files.logFile,
      ...(terminal ? { consoleSocket: files.consoleSocket } : {}),
    });
    return this.main.start({
      crunBinary: this.paths.crun.binary,
      crunArgs: args,
      terminal,
      consoleSocketPath: files.consoleSocket,
      initialSize: this.#terminalSize(this.spec.process!),
      pidFile: files.pidFile,
      logFile: files.logFile,
    });
  }

  async exec(execId: string, processJson: string): Promise<number> {
    if (!execId) throw invalidArgument('exec_id must not be empty');
    if (this.#processes.has(execId)) throw alreadyExists(`process ${execId} in container ${this.id}`);
    if (this.main.state !== 'running') throw failedPrecondition(`container ${this.id} is not running`);
    let parsed: OciProcess;
    try {
      parsed = JSON.parse(processJson) as OciProcess;
    } catch (err) {
      throw invalidArgument(`process_json is not valid JSON: ${(err as Error).message}`);
    }
    validateProcess(parsed, 'exec process');
    const adjustments: string[] = [];
    const process = guestProcess(parsed, adjustments);
    for (const a of adjustments) this.log.info(a, { container: this.id, exec: execId });
    await checkExecutable(this.spec.root!.path, process.args![0]!, process.env, process.cwd);

    const files = this.#files(execId);
    await writeFile(files.processFile, JSON.stringify(process));
    const terminal = process.terminal === true;
    const guest = new GuestProcess(this.id, execId, this.native, this.log, this.outputFlushMs);
    this.#processes.set(execId, guest);
    try {
      return await guest.start({
        crunBinary: this.paths.crun.binary,
        crunArgs: crun.execArgs(this.paths.crun, {
          containerId: this.id,
          processFile: files.processFile,
          pidFile: files.pidFile,
          logFile: files.logFile,
          ...(terminal ? { consoleSocket: files.consoleSocket } : {}),
        }),
        terminal,
        consoleSocketPath: files.consoleSocket,
        initialSize: this.#terminalSize(process),
        pidFile: files.pidFile,
        logFile: files.logFile,
      });
    } catch (err) {
      this.#processes.delete(execId);
      throw err;
    }
  }

  async signal(execId: string, signal: number, all: boolean): Promise<void> {
    const target = this.process(execId);
    if (all && execId === MAIN) {
      if (target.state !== 'running') throw failedPrecondition(`container ${this.id} is not running`);
      await runCrun(this.paths.crun.binary, crun.killArgs(this.paths.crun, this.#files('kill').logFile, this.id, signal, true), this.#files('kill').logFile, `signal ${signal} to all processes of ${this.id}`);
      return;
    }
    target.signal(signal);
  }

  async pause(): Promise<void> {
    this.#requireRunning();
    const logFile = this.#files('pause').logFile;
    await runCrun(this.paths.crun.binary, crun.simpleArgs(this.paths.crun, logFile, 'pause', this.id), logFile, `pause of ${this.id}`);
  }

  async resume(): Promise<void> {
    this.#requireRunning();
    const logFile = this.#files('resume').logFile;
    await runCrun(this.paths.crun.binary, crun.simpleArgs(this.paths.crun, logFile, 'resume', this.id), logFile, `resume of ${this.id}`);
  }

  async update(resourcesJson: string): Promise<void> {
    this.#requireRunning();
    try {
      JSON.parse(resourcesJson);
    } catch (err) {
      throw invalidArgument(`resources_json is not valid JSON: ${(err as Error).message}`);
    }
    const file = join(this.paths.bundleDir, 'resources.json');
    await writeFile(file, resourcesJson);
    const logFile = this.#files('update').logFile;
    await runCrun(this.paths.crun.binary, crun.updateArgs(this.paths.crun, logFile, this.id, file), logFile, `update of ${this.id}`);
  }

  async stats(): Promise<ContainerStats> {
    this.#requireRunning();
    return readContainerStats(this.paths.cgroupDir);
  }

  async listProcesses(): Promise<ProcessInfo[]> {
    this.#requireRunning();
    const procs = await readFile(join(this.paths.cgroupDir, 'cgroup.procs'), 'utf8').catch(() => '');
    const execByPid = new Map<number, string>();
    for (const [execId, p] of this.#processes) if (p.pid > 0) execByPid.set(p.pid, execId);
    const pids = procs.split('\n').filter(Boolean).map(Number);
    return Promise.all(
      pids.map(async (pid) => ({
        pid,
        command: (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim(),
        execId: execByPid.get(pid) ?? '',
      })),
    );
  }

  #requireRunning(): void {
    if (this.main.state !== 'running') throw failedPrecondition(`container ${this.id} is not running`);
  }

  /** Stops everything and removes the bundle. Without force, a running container is refused. */
  async remove(force: boolean): Promise<void> {
    if (this.main.state === 'running') {
      if (!force) throw failedPrecondition(`container ${this.id} is running; stop it or remove with force`);
      await this.kill(0);
    }
    for (const p of this.#processes.values()) if (p.state === 'running') p.forceKill();
    this.#releaseNetns();
    const logFile = this.#files('delete').logFile;
    await runCrun(this.paths.crun.binary, crun.simpleArgs(this.paths.crun, logFile, 'delete', this.id, true), logFile, `delete of ${this.id}`).catch((err) =>
      this.log.debug('crun delete', { container: this.id, error: (err as Error).message }),
    );
    await rm(this.paths.bundleDir, { recursive: true, force: true });
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the main process has exited. */
  async kill(graceMs: number): Promise<ExitInfo | undefined> {
    const exited = this.main.exited;
    if (this.main.state !== 'running' || !exited) return exited;
    if (graceMs > 0) {
      await this.signal(MAIN, 15, true).catch(() => undefined);
      if (await settlesWithin(exited, graceMs)) return exited;
    }
    await this.signal(MAIN, 9, true).catch(() => this.main.forceKill());
    return exited;
  }
}
