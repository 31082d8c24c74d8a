// The containerd shim v2 Task service: translates Task API calls into sandbox
// operations and keeps the per-task bookkeeping. One shim serves one sandbox
// (VM) with any number of tasks; the first Create boots the VM.
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import { settlesWithin } from '../../../common/settle.js';
import { containerd, google } from '../../../proto/gen/containerd/containerd.js';
import { SHIM_VERSION } from './version.js';
import { placeHostNamespaces, type PodRole, type SpecLike } from '../sandbox/pod-placement.js';
import type { ProcessHandle } from '../sandbox/process-handle.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { SandboxRequest } from './sandbox-boot.js';
import { markCleanedUp, recordRunRoot } from './bundle-state.js';
import { isValidId } from './ids.js';
import { Code, TtrpcError } from '../ttrpc/status.js';
import { containerKind, sandboxIdOf } from './annotations.js';
import { type EventPublisher, timestamp } from './events.js';
import { metricsAny } from './metrics.js';
import { ProcessState, TaskStatus, type ExitRecord } from './process-state.js';
import { mountRootfs, unmountRootfs } from './rootfs.js';
import { ProcessStdio } from './stdio.js';
import { runtimeConfigPath } from './runtime-options.js';

import v2 = containerd.task.v2;

const PROCESS_SPEC_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

interface ProcessRecord {
  state: ProcessState;
  stdio: ProcessStdio;
  handle?: ProcessHandle;
  /** OCI process of an exec. */
  spec?: Record<string, unknown>;
}

interface Task {
  id: string;
  bundle: string;
  rootfs: string;
  mountedRootfs: boolean;
  init: ProcessRecord;
  execs: Map<string, ProcessRecord>;
}

export interface TaskServiceDeps {
  namespace: string;
  log: Logger;
  events: EventPublisher;
  /** Boots the sandbox VM for the first task. */
  /** Boots a sandbox; an abort of `signal` ends the boot, leaving nothing behind. */
  startSandbox: (req: SandboxRequest, signal: AbortSignal) => Promise<Sandbox>;
  /** A boot the shim began before the first Create, from that task's bundle; Create takes it over if it asks for the same sandbox. */
  prepared?: PreparedSandbox;
  /** Called after Shutdown answered, when no task is left. */
  onShutdown: () => void;
}

export interface PreparedSandbox {
  request: SandboxRequest;
  sandbox: Promise<Sandbox>;
  /** Ends that boot (the VM is stopped and cleaned up) when the Create it was for gives up. */
  abort: AbortController;
}

export interface OciSpecLike extends SpecLike {
  root?: { path?: string };
  annotations?: Record<string, string>;
  linux?: { resources?: Record<string, unknown>; namespaces?: { type: string; path?: string }[] };
  [key: string]: unknown;
}

/** Beyond the agent's own flush bound: the time its last output takes to reach us. */
const OUTPUT_FLUSH_MARGIN_MS = 2000;

const sleepingExit = (signal: number): ExitRecord => ({ status: 128 + signal, at: new Date() });

const POD_ROLES: Record<ReturnType<typeof containerKind>, PodRole> = { sandbox: 'pod-sandbox', 'pod-container': 'pod-member', single: 'standalone' };

export class TaskService {
  readonly #tasks = new Map<string, Task>();
  #sandbox: Promise<Sandbox> | undefined;
  /** Ends the boot of #sandbox while it is under way. */
  #bootAbort: AbortController | undefined;
  #prepared: PreparedSandbox | undefined;
  /** Bundles of deleted tasks that owned the VM: clean once it is stopped. */
  readonly #cleanAfterTeardown: string[] = [];

  constructor(private readonly deps: TaskServiceDeps) {
    this.#prepared = deps.prepared;
    // Its failure is Create's to report; until then it must not count as unhandled.
    this.#prepared?.sandbox.catch(() => undefined);
  }

  #task(id: string): Task {
    const t = this.#tasks.get(id);
    if (!t) throw new TtrpcError(Code.NOT_FOUND, `task ${id} not found`);
    return t;
  }

  #process(id: string, execId: string): ProcessRecord {
    const t = this.#task(id);
    if (!execId) return t.init;
    const p = t.execs.get(execId);
    if (!p) throw new TtrpcError(Code.NOT_FOUND, `exec ${execId} of task ${id} not found`);
    return p;
  }

  async #sandboxFor(taskId: string, bundle: string, spec: OciSpecLike, configPath: string | undefined): Promise<Sandbox> {
    if (!this.#sandbox) {
      if (containerKind(spec.annotations) === 'pod-container')
        throw new TtrpcError(Code.FAILED_PRECONDITION, `task ${taskId} belongs to pod sandbox ${sandboxIdOf(taskId, spec.annotations)}, which this shim does not run`);
      const request: SandboxRequest = { namespace: this.deps.namespace, sandboxId: sandboxIdOf(taskId, spec.annotations), bundle, spec, configPath };
      const boot = this.#takePrepared(request) ?? this.#startSandbox(request);
      this.#sandbox = boot.sandbox;
      this.#bootAbort = boot.abort;
      this.#sandbox.then(
        (sandbox) => void this.#forwardOomEvents(sandbox),
        () => (this.#sandbox = undefined),
      );
      void this.#sandbox.finally(() => this.#bootAbort === boot.abort && (this.#bootAbort = undefined)).catch(() => undefined);
    }
    return this.#sandbox;
  }

  #startSandbox(request: SandboxRequest): { sandbox: Promise<Sandbox>; abort: AbortController } {
    const abort = new AbortController();
    return { sandbox: this.deps.startSandbox(request, abort.signal), abort };
  }

  /** The sandbox for a Create; if that Create gives up while the sandbox boots for it, the boot ends too. */
  async #sandboxForCreate(req: v2.CreateTaskRequest, spec: OciSpecLike, signal: AbortSignal | undefined): Promise<Sandbox> {
    const booting = this.#sandbox === undefined;
    const sandbox = this.#sandboxFor(req.id, req.bundle, spec, runtimeConfigPath(req.options));
    const bootAbort = this.#bootAbort;
    if (!booting || !signal || !bootAbort) return sandbox;
    const giveUp = () => {
      this.deps.log.warn('Create gave up while the sandbox booted; stopping the boot', { id: req.id, reason: String(signal.reason?.message ?? signal.reason) });
      bootAbort.abort(signal.reason);
    };
    if (signal.aborted) giveUp();
    signal.addEventListener('abort', giveUp, { once: true });
    try {
      return await sandbox;
    } finally {
      signal.removeEventListener('abort', giveUp);
    }
  }

  /** The boot begun before Create, if it is for this sandbox with the same configuration; otherwise it is stopped. */
  #takePrepared(request: SandboxRequest): PreparedSandbox | undefined {
    const prepared = this.#prepared;
    this.#prepared = undefined;
    if (!prepared) return undefined;
    if (prepared.request.sandboxId === request.sandboxId && prepared.request.configPath === request.configPath) return prepared;
    this.deps.log.warn('the sandbox booted ahead of Create does not match it; booting another', {
      booted: prepared.request.sandboxId,
      wanted: request.sandboxId,
      bootedConfig: prepared.request.configPath ?? 'default',
      wantedConfig: request.configPath ?? 'default',
    });
    prepared.abort.abort(new Error('the sandbox booted ahead of Create does not match it'));
    void prepared.sandbox.then((s) => s.stop(), () => undefined);
    return undefined;
  }

  /** Publishes /tasks/oom for every OOM kill the agent reports, until the sandbox goes away. */
  async #forwardOomEvents(sandbox: Sandbox): Promise<void> {
    for (;;) {
      try {
        const containerId = await sandbox.nextOomKill();
        if (this.#tasks.has(containerId)) this.deps.events.publish({ topic: '/tasks/oom', type: 'TaskOOM', event: { containerId } });
      } catch {
        return; // the sandbox stopped
      }
    }
  }

  get taskCount(): number {
    return this.#tasks.size;
  }

  /** Each task's state and how many execs it has, for `kata-ts ps` and the metrics. */
  containerStatuses(): { id: string; status: string; execs: number }[] {
    return [...this.#tasks.values()].map((t) => ({ id: t.id, status: (TaskStatus[t.init.state.status] ?? 'unknown').toLowerCase(), execs: t.execs.size }));
  }

  async create(req: v2.CreateTaskRequest, signal?: AbortSignal): Promise<v2.ICreateTaskResponse> {
    if (!isValidId(req.id)) throw new TtrpcError(Code.INVALID_ARGUMENT, `task id ${JSON.stringify(req.id)} is not valid`);
    if (this.#tasks.has(req.id)) throw new TtrpcError(Code.ALREADY_EXISTS, `task ${req.id} already exists`);
    if (req.checkpoint) throw new TtrpcError(Code.UNIMPLEMENTED, 'restoring from a checkpoint is not supported by kata-ts');
    let spec: OciSpecLike;
    try {
      spec = JSON.parse(await readFile(join(req.bundle, 'config.json'), 'utf8')) as OciSpecLike;
    } catch (err) {
      throw new TtrpcError(Code.INVALID_ARGUMENT, `cannot read the OCI spec of ${req.id}: ${(err as Error).message}`);
    }
    const rootPath = spec.root?.path ?? 'rootfs';
    const rootfs = isAbsolute(rootPath) ? rootPath : join(req.bundle, rootPath);
    const log = this.deps.log.child({ id: req.id });
    if (req.rootfs.length > 0) await mountRootfs(req.rootfs, rootfs);
    let stdio: ProcessStdio | undefined;
    try {
      stdio = await this.#openStdio(req, req.id, log);
      const sandbox = await this.#sandboxForCreate(req, spec, signal);
      await recordRunRoot(req.bundle, sandbox.runRoot);
      const placed = placeHostNamespaces(spec, sandbox.hostNetwork === 'isolate');
      if (placed.isolatedNetwork) log.warn('the task asks for the host network; it runs on an isolated guest network instead, as [runtime] host_network = "isolate" allows');
      await sandbox.createContainer(req.id, { spec: placed.spec, rootfs, role: POD_ROLES[containerKind(spec.annotations)] });
      const task: Task = {
        id: req.id,
        bundle: req.bundle,
        rootfs,
        mountedRootfs: req.rootfs.length > 0,
        init: { state: new ProcessState(`task ${req.id}`), stdio },
        execs: new Map(),
      };
      this.#tasks.set(req.id, task);
      const pid = sandbox.vm.pid ?? 0;
      this.deps.events.publish({
        topic: '/tasks/create',
        type: 'TaskCreate',
        event: {
          containerId: req.id,
          bundle: req.bundle,
          rootfs: req.rootfs,
          io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
          pid,
        },
      });
      log.info('task created', { sandbox: sandbox.id });
      return { pid };
    } catch (err) {
      if (req.rootfs.length > 0) await unmountRootfs(rootfs).catch(() => undefined);
      await stdio?.close().catch(() => undefined);
      throw err;
    }
  }

  /** The stdio of a new process: URIs checked and a logging binary started before anything else. */
  async #openStdio(req: v2.ICreateTaskRequest | v2.IExecProcessRequest, id: string, log: Logger): Promise<ProcessStdio> {
    const paths = { stdin: req.stdin ?? '', stdout: req.stdout ?? '', stderr: req.stderr ?? '', terminal: req.terminal ?? false };
    const stdio = new ProcessStdio(paths, log, { id, namespace: this.deps.namespace });
    try {
      await stdio.open();
    } catch (err) {
      throw new TtrpcError(Code.INVALID_ARGUMENT, `stdio of ${id}: ${(err as Error).message}`);
    }
    return stdio;
  }

  async start(req: v2.StartRequest): Promise<v2.IStartResponse> {
    const task = this.#task(req.id);
    const proc = this.#process(req.id, req.execId);
    proc.state.beginStart();
    const sandbox = await this.#sandbox!;
    let started: Awaited<ReturnType<Sandbox['exec']>>;
    try {
      started = req.execId ? await sandbox.exec(req.id, req.execId, proc.spec!) : await sandbox.startContainer(req.id);
      proc.handle = started.process;
      await proc.stdio.attach(started.process);
    } catch (err) {
      proc.state.startFailed();
      throw err;
    }
    const pid = sandbox.vm.pid ?? 0;
    proc.state.started(pid);
    // Published before the waiter below exists, so an early exit cannot overtake it.
    if (req.execId) this.deps.events.publish({ topic: '/tasks/exec-started', type: 'TaskExecStarted', event: { containerId: task.id, execId: req.execId, pid } });
    else this.deps.events.publish({ topic: '/tasks/start', type: 'TaskStart', event: { containerId: task.id, pid } });
    void this.#awaitExit(task, req.execId, proc, started.process);
    return { pid };
  }

  /** Records the exit only after all output reached containerd's FIFOs and they were closed. */
  async #awaitExit(task: Task, execId: string, proc: ProcessRecord, handle: ProcessHandle): Promise<void> {
    let exit: ExitRecord;
    try {
      const e = await handle.wait();
      exit = { status: e.status, at: e.exitedAt };
    } catch (err) {
      this.deps.log.error('lost a process', { id: task.id, exec: execId, error: (err as Error).message });
      exit = { status: 255, at: new Date() };
    }
    // The agent cuts output still open outputFlushMs after the exit; a guest that does not is not waited for either.
    const sandbox = await this.#sandbox?.catch(() => undefined);
    const boundMs = (sandbox?.outputFlushMs ?? 2000) + OUTPUT_FLUSH_MARGIN_MS;
    if (!(await settlesWithin(proc.stdio.flushed, boundMs))) this.deps.log.warn('output did not end after the exit; closing it', { id: task.id, exec: execId || undefined, waitedMs: boundMs });
    await proc.stdio.close();
    // containerd expects a task's execs to have exited before its init: they go with it.
    if (!execId) await this.#execExits(task, boundMs);
    this.#recordExit(task, execId, proc, exit);
  }

  /** Until every started exec of the task has its exit recorded, or boundMs has passed. */
  async #execExits(task: Task, boundMs: number): Promise<void> {
    const running = [...task.execs.values()].filter((p) => p.handle && p.state.status !== TaskStatus.STOPPED);
    if (running.length === 0) return;
    await settlesWithin(Promise.all(running.map((p) => p.state.exited)), boundMs);
  }

  #recordExit(task: Task, execId: string, proc: ProcessRecord, exit: ExitRecord): void {
    if (proc.state.status === TaskStatus.STOPPED) return;
    proc.state.stopped(exit);
    this.deps.events.publish({
      topic: '/tasks/exit',
      type: 'TaskExit',
      event: { containerId: task.id, id: execId || task.id, pid: proc.state.pid, exitStatus: exit.status, exitedAt: timestamp(exit.at) },
    });
  }

  async state(req: v2.StateRequest): Promise<v2.IStateResponse> {
    const task = this.#task(req.id);
    const proc = this.#process(req.id, req.execId);
    const paths = proc.stdio.paths;
    return {
      id: req.id,
      bundle: task.bundle,
      pid: proc.state.pid,
      status: proc.state.status as number,
      stdin: paths.stdin,
      stdout: paths.stdout,
      stderr: paths.stderr,
      terminal: paths.terminal,
      exitStatus: proc.state.exit?.status ?? 0,
      exitedAt: proc.state.exit ? timestamp(proc.state.exit.at) : null,
      execId: req.execId,
    };
  }

  async wait(req: v2.WaitRequest): Promise<v2.IWaitResponse> {
    const exit = await this.#process(req.id, req.execId).state.exited;
    return { exitStatus: exit.status, exitedAt: timestamp(exit.at) };
  }

  async kill(req: v2.KillRequest): Promise<google.protobuf.IEmpty> {
    const task = this.#task(req.id);
    const proc = this.#process(req.id, req.execId);
    // A Kill during Start acts on what the start leaves, so no exit is invented before a TaskStart.
    await proc.state.startSettled;
    const status = proc.state.status;
    if (status === TaskStatus.STOPPED) {
      // Stopping what already stopped succeeds, so CRI's stop stays idempotent.
      if (req.signal === 9 || req.signal === 15) return {};
      throw new TtrpcError(Code.NOT_FOUND, `process ${req.execId || req.id} already finished`);
    }
    if (status === TaskStatus.CREATED) {
      // Never started: there is no process to signal; it simply ends.
      if (!req.execId) await (await this.#sandbox!).removeContainer(req.id, true).catch(() => undefined);
      this.#recordExit(task, req.execId, proc, sleepingExit(req.signal));
      return {};
    }
    await proc.handle!.signal(req.signal, req.all);
    return {};
  }

  async exec(req: v2.ExecProcessRequest): Promise<google.protobuf.IEmpty> {
    const task = this.#task(req.id);
    if (!req.execId || !isValidId(req.execId)) throw new TtrpcError(Code.INVALID_ARGUMENT, `exec id ${JSON.stringify(req.execId)} is not valid`);
    if (task.execs.has(req.execId)) throw new TtrpcError(Code.ALREADY_EXISTS, `exec ${req.execId} already exists in task ${req.id}`);
    task.init.state.requireRunning('exec in');
    if (req.spec?.type_url && req.spec.type_url !== PROCESS_SPEC_URL)
      throw new TtrpcError(Code.INVALID_ARGUMENT, `exec spec has type ${req.spec.type_url}, not ${PROCESS_SPEC_URL}`);
    let spec: Record<string, unknown>;
    try {
      spec = JSON.parse(Buffer.from(req.spec?.value ?? []).toString('utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new TtrpcError(Code.INVALID_ARGUMENT, `exec spec is not valid JSON: ${(err as Error).message}`);
    }
    const log = this.deps.log.child({ id: req.id, exec: req.execId });
    const stdio = await this.#openStdio(req, req.execId, log);
    task.execs.set(req.execId, {
      state: new ProcessState(`exec ${req.execId} of task ${req.id}`),
      stdio,
      spec: { ...spec, terminal: req.terminal },
    });
    this.deps.events.publish({ topic: '/tasks/exec-added', type: 'TaskExecAdded', event: { containerId: req.id, execId: req.execId } });
    return {};
  }

  async delete(req: v2.DeleteRequest): Promise<v2.IDeleteResponse> {
    const task = this.#task(req.id);
    const proc = this.#process(req.id, req.execId);
    await proc.state.startSettled;
    proc.state.checkDeletable();
    const exit = proc.state.exit ?? { status: 0, at: new Date() };
    const response = { pid: proc.state.pid, exitStatus: exit.status, exitedAt: timestamp(exit.at) };
    // Closing again is harmless; for a process never started it stops a logging binary.
    await proc.stdio.close().catch(() => undefined);
    if (req.execId) {
      task.execs.delete(req.execId);
      return response;
    }
    // Execs added but never started go with their init: their FIFOs and logging binaries too.
    for (const exec of task.execs.values()) await exec.stdio.close().catch(() => undefined);
    task.execs.clear();
    const sandbox = await this.#sandbox!;
    try {
      await sandbox.removeContainer(req.id, true);
    } catch (err) {
      this.deps.log.warn('cannot remove the container from the sandbox', { id: req.id, error: (err as Error).message });
    }
    if (task.mountedRootfs) await unmountRootfs(task.rootfs);
    this.#tasks.delete(req.id);
    if (req.id === sandbox.id) this.#cleanAfterTeardown.push(task.bundle);
    else await this.#markCleanedUp(task.bundle);
    this.deps.events.publish({
      topic: '/tasks/delete',
      type: 'TaskDelete',
      event: { containerId: req.id, pid: response.pid, exitStatus: exit.status, exitedAt: response.exitedAt, id: req.id },
    });
    return response;
  }

  async pids(req: v2.PidsRequest): Promise<v2.IPidsResponse> {
    this.#task(req.id).init.state.requireRunning('list the processes of');
    const sandbox = await this.#sandbox!;
    return { processes: (await sandbox.listProcesses(req.id)).map((p) => ({ pid: p.pid })) };
  }

  pause(req: v2.PauseRequest): Promise<google.protobuf.IEmpty> {
    return this.#setPaused(req.id, true);
  }

  resume(req: v2.ResumeRequest): Promise<google.protobuf.IEmpty> {
    return this.#setPaused(req.id, false);
  }

  /** Freezes or thaws the task's cgroup in the guest; the state changes first and rolls back on failure. */
  async #setPaused(id: string, paused: boolean): Promise<google.protobuf.IEmpty> {
    const state = this.#task(id).init.state;
    const apply = (to: boolean) => (to ? state.paused() : state.resumed());
    apply(paused);
    try {
      await (await this.#sandbox!).setPaused(id, paused);
    } catch (err) {
      apply(!paused);
      throw err;
    }
    this.deps.events.publish(
      paused
        ? { topic: '/tasks/paused', type: 'TaskPaused', event: { containerId: id } }
        : { topic: '/tasks/resumed', type: 'TaskResumed', event: { containerId: id } },
    );
    return {};
  }

  async resizePty(req: v2.ResizePtyRequest): Promise<google.protobuf.IEmpty> {
    const proc = this.#process(req.id, req.execId);
    proc.state.requireRunning('resize the terminal of');
    await proc.handle!.resize(req.height, req.width);
    return {};
  }

  async closeIO(req: v2.CloseIORequest): Promise<google.protobuf.IEmpty> {
    const proc = this.#process(req.id, req.execId);
    if (req.stdin && proc.handle && proc.state.status !== TaskStatus.STOPPED) await proc.stdio.closeStdin(proc.handle).catch(() => undefined);
    return {};
  }

  async update(req: v2.UpdateTaskRequest): Promise<google.protobuf.IEmpty> {
    this.#task(req.id).init.state.requireRunning('update');
    const json = Buffer.from(req.resources?.value ?? []).toString('utf8');
    await (await this.#sandbox!).updateContainer(req.id, json || '{}');
    return {};
  }

  async stats(req: v2.StatsRequest): Promise<v2.IStatsResponse> {
    this.#task(req.id).init.state.requireRunning('read the statistics of');
    const stats = await (await this.#sandbox!).containerStats(req.id);
    return { stats: metricsAny(stats) };
  }

  async connect(_req: v2.ConnectRequest): Promise<v2.IConnectResponse> {
    const sandbox = this.#sandbox ? await this.#sandbox.catch(() => undefined) : undefined;
    return { shimPid: process.pid, taskPid: sandbox?.vm.pid ?? 0, version: SHIM_VERSION };
  }

  async checkpoint(_req: v2.CheckpointTaskRequest): Promise<google.protobuf.IEmpty> {
    throw new TtrpcError(Code.UNIMPLEMENTED, 'checkpoint is not supported by kata-ts: a VM sandbox has no CRIU path');
  }

  /**
   * Once no task is left, stops the sandbox before answering and exits after; otherwise (a pod
   * with other containers) does nothing. Answering first would let containerd run `delete`
   * while the VM is still shutting down, and that would take the shim for dead and kill it.
   */
  async shutdown(_req: v2.ShutdownRequest): Promise<google.protobuf.IEmpty> {
    if (this.#tasks.size > 0) return {};
    await this.teardown();
    setImmediate(this.deps.onShutdown);
    return {};
  }

  /** Stops the sandbox VM (if one was started or is booting) and unmounts every rootfs. */
  async teardown(): Promise<void> {
    for (const task of this.#tasks.values()) {
      for (const p of [task.init, ...task.execs.values()]) await p.stdio.close().catch(() => undefined);
      if (task.mountedRootfs) await unmountRootfs(task.rootfs).catch(() => undefined);
    }
    this.#tasks.clear();
    for (const booting of [this.#sandbox, this.#prepared?.sandbox]) {
      const sandbox = booting ? await booting.catch(() => undefined) : undefined;
      await sandbox?.stop();
    }
    this.#prepared = undefined;
    for (const bundle of this.#cleanAfterTeardown.splice(0)) await this.#markCleanedUp(bundle);
  }

  async #markCleanedUp(bundle: string): Promise<void> {
    // Only a shortcut for `delete`: without it, `delete` does the same checks the long way.
    await markCleanedUp(bundle).catch((err: Error) => this.deps.log.debug('cannot mark the bundle cleaned up', { bundle, error: err.message }));
  }
}
