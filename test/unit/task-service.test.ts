// The Task service's bookkeeping and state machine, over a fake sandbox.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { containerd } from '../../proto/gen/containerd/containerd.js';
import type { EventPublisher, TaskEvent } from '../../shim/src/containerd/events.js';
import { TaskStatus } from '../../shim/src/containerd/process-state.js';
import { CLEANED_UP_FILE, recordedRunRoot } from '../../shim/src/containerd/bundle-state.js';
import type { SandboxRequest } from '../../shim/src/containerd/sandbox-boot.js';
import { TaskService, type PreparedSandbox } from '../../shim/src/containerd/task-service.js';
import { toTtrpcError } from '../../shim/src/containerd/wire-errors.js';
import { HostCapabilityError } from '../../shim/src/hypervisor/accel.js';
import { NetnsGoneError } from '../../shim/src/network/pod-network.js';
import { SpecError } from '../../shim/src/sandbox/errors.js';
import { Code, TtrpcError } from '../../shim/src/ttrpc/status.js';
import type { Sandbox } from '../../shim/src/sandbox/sandbox.js';

import v2 = containerd.task.v2;

function fakeProcess() {
  let exit!: (status: number) => void;
  const exited = new Promise<{ status: number; exitedAt: Date }>((r) => (exit = (status) => r({ status, exitedAt: new Date(1000) })));
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const signals: number[] = [];
  return {
    handle: {
      stdout,
      stderr,
      wait: async () => {
        const e = await exited;
        stdout.end();
        stderr.end();
        return e;
      },
      closeStdin: async () => undefined,
      write: async () => undefined,
      signal: async (s: number) => void signals.push(s),
      resize: async () => undefined,
    },
    exit,
    signals,
  };
}

function fakeSandbox(id: string, stops: string[]) {
  return {
    id,
    runRoot: '/run/kata-ts-unit',
    vm: { pid: 4242 },
    createContainer: async () => undefined,
    nextOomKill: () => new Promise(() => undefined),
    stop: async () => void stops.push(id),
  } as unknown as Sandbox;
}

/** The bundle folders setup() made; each test's are removed after it. */
const bundles: string[] = [];
afterEach(() => {
  for (const b of bundles.splice(0)) rmSync(b, { recursive: true, force: true });
});

function setup(prepared?: PreparedSandbox, startGate?: Promise<void>, boot?: (signal: AbortSignal) => Promise<void>) {
  const events: TaskEvent[] = [];
  const procs: ReturnType<typeof fakeProcess>[] = [];
  const removed: string[] = [];
  const agentCalls: string[] = [];
  const sandboxStops: string[] = [];
  const sandbox = {
    id: 'sb',
    runRoot: '/run/kata-ts-unit',
    vm: { pid: 4242 },
    createContainer: async () => undefined,
    startContainer: async () => {
      await startGate;
      const p = fakeProcess();
      procs.push(p);
      return { pid: 7, process: p.handle };
    },
    exec: async () => {
      const p = fakeProcess();
      procs.push(p);
      return { pid: 8, process: p.handle };
    },
    removeContainer: async (id: string) => void removed.push(id),
    // The OOM long poll never answers here; the calls that reach the guest are recorded.
    nextOomKill: () => new Promise(() => undefined),
    setPaused: async (_id: string, paused: boolean) => void agentCalls.push(paused ? 'pause' : 'resume'),
    stop: async () => void sandboxStops.push('sb'),
  } as unknown as Sandbox;
  let shutdowns = 0;
  const booted: SandboxRequest[] = [];
  const service = new TaskService({
    namespace: 'default',
    log: createLogger({ level: 'error' }),
    events: { publish: (e: TaskEvent) => void events.push(e) } as unknown as EventPublisher,
    startSandbox: async (req, signal) => {
      booted.push(req);
      await boot?.(signal);
      return sandbox;
    },
    ...(prepared ? { prepared } : {}),
    onShutdown: () => void shutdowns++,
  });
  const bundle = mkdtempSync(join(tmpdir(), 'kata-ts-bundle-'));
  bundles.push(bundle);
  writeFileSync(join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', process: { args: ['sh'], cwd: '/', user: { uid: 0, gid: 0 } }, root: { path: 'rootfs' }, linux: { namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'network' }] } }));
  const create = (id: string, signal?: AbortSignal) => service.create(v2.CreateTaskRequest.create({ id, bundle }), signal);
  return { service, events, procs, removed, agentCalls, create, booted, bundle, sandboxStops, shutdowns: () => shutdowns };
}

const flush = () => new Promise((r) => setImmediate(r));
const code = async (p: Promise<unknown>) => ((await p.catch((e: unknown) => e)) as { code?: number }).code;

describe('TaskService', () => {
  it('walks a task through create, start, exit and delete, with events in order', async () => {
    const { service, events, procs, removed, create } = setup();
    expect(await create('t1')).toEqual({ pid: 4242 });
    expect((await service.state(v2.StateRequest.create({ id: 't1' }))).status).toBe(TaskStatus.CREATED);
    expect(await service.start(v2.StartRequest.create({ id: 't1' }))).toEqual({ pid: 4242 });
    expect((await service.state(v2.StateRequest.create({ id: 't1' }))).status).toBe(TaskStatus.RUNNING);
    const waiting = service.wait(v2.WaitRequest.create({ id: 't1' }));
    procs[0]!.exit(3);
    expect((await waiting).exitStatus).toBe(3);
    const deleted = await service.delete(v2.DeleteRequest.create({ id: 't1' }));
    expect(deleted.exitStatus).toBe(3);
    expect(removed).toEqual(['t1']);
    expect(events.map((e) => e.topic)).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
    expect(await code(service.state(v2.StateRequest.create({ id: 't1' })))).toBe(5);
  });

  it("ends the boot when containerd's deadline for Create passes, answers DEADLINE_EXCEEDED, and boots anew for the next Create", async () => {
    let bootSignal: AbortSignal | undefined;
    let hang = true;
    let bootBegan!: () => void;
    const began = new Promise<void>((r) => (bootBegan = r));
    const { create, booted } = setup(undefined, undefined, (signal) => {
      bootSignal = signal;
      bootBegan();
      // A boot that only ends when it is told to, as Sandbox.start does on abort.
      if (!hang) return Promise.resolve();
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    });
    const deadline = new AbortController();
    const creating = create('t1', deadline.signal);
    await began;
    expect(bootSignal?.aborted).toBe(false);
    // What the ttrpc server aborts a call's signal with at its deadline.
    deadline.abort(new TtrpcError(Code.DEADLINE_EXCEEDED, 'ttrpc: deadline exceeded'));
    expect(await code(creating)).toBe(Code.DEADLINE_EXCEEDED);
    expect(bootSignal?.aborted).toBe(true);
    hang = false;
    expect(await create('t1')).toEqual({ pid: 4242 });
    expect(booted).toHaveLength(2);
  });

  it('lets a Kill that comes during Start act on the started process, so no exit precedes TaskStart', async () => {
    let open!: () => void;
    const { service, events, procs, create } = setup(undefined, new Promise<void>((r) => (open = r)));
    await create('t1');
    const starting = service.start(v2.StartRequest.create({ id: 't1' }));
    const killing = service.kill(v2.KillRequest.create({ id: 't1', signal: 9 }));
    await flush();
    expect(events.map((e) => e.topic)).toEqual(['/tasks/create']);
    open();
    await starting;
    await killing;
    expect(procs[0]!.signals).toEqual([9]);
    procs[0]!.exit(137);
    await service.wait(v2.WaitRequest.create({ id: 't1' }));
    expect(events.map((e) => e.topic)).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit']);
  });

  it("publishes an init's exit after the exits of its execs", async () => {
    const { service, events, procs, create } = setup();
    await create('t1');
    await service.start(v2.StartRequest.create({ id: 't1' }));
    const spec = { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['sleep', '9'], cwd: '/' })) };
    await service.exec(v2.ExecProcessRequest.create({ id: 't1', execId: 'e1', spec }));
    await service.start(v2.StartRequest.create({ id: 't1', execId: 'e1' }));
    procs[0]!.exit(137);
    await flush();
    procs[1]!.exit(137);
    await service.wait(v2.WaitRequest.create({ id: 't1' }));
    const exits = events.filter((e) => e.topic === '/tasks/exit').map((e) => (e.event as { id: string }).id);
    expect(exits).toEqual(['e1', 't1']);
  });

  it('answers illegal requests with the codes containerd acts on', async () => {
    const { service, create } = setup();
    await create('t1');
    expect(await code(create('t1'))).toBe(6); // ALREADY_EXISTS
    expect(await code(create('bad id!'))).toBe(3); // INVALID_ARGUMENT
    expect(await code(service.start(v2.StartRequest.create({ id: 'nope' })))).toBe(5); // NOT_FOUND
    await service.start(v2.StartRequest.create({ id: 't1' }));
    expect(await code(service.start(v2.StartRequest.create({ id: 't1' })))).toBe(9); // FAILED_PRECONDITION
    expect(await code(service.delete(v2.DeleteRequest.create({ id: 't1' })))).toBe(9);
    expect(await code(service.checkpoint(v2.CheckpointTaskRequest.create({ id: 't1' })))).toBe(12); // UNIMPLEMENTED
    expect(await code(service.resume(v2.ResumeRequest.create({ id: 't1' })))).toBe(9);
  });

  it('keeps exec ids unique and reports an exec exit with its own id', async () => {
    const { service, events, procs, create } = setup();
    await create('t1');
    await service.start(v2.StartRequest.create({ id: 't1' }));
    const spec = { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['true'], cwd: '/' })) };
    await service.exec(v2.ExecProcessRequest.create({ id: 't1', execId: 'e1', spec }));
    expect(await code(service.exec(v2.ExecProcessRequest.create({ id: 't1', execId: 'e1', spec })))).toBe(6);
    await service.start(v2.StartRequest.create({ id: 't1', execId: 'e1' }));
    procs[1]!.exit(0);
    await service.wait(v2.WaitRequest.create({ id: 't1', execId: 'e1' }));
    const exit = events.find((e) => e.topic === '/tasks/exit');
    expect(exit?.event).toMatchObject({ containerId: 't1', id: 'e1', exitStatus: 0 });
  });

  it('stops the logging binary of an exec that never started when its init is deleted', async () => {
    const { service, procs, create, bundle } = setup();
    const logger = join(bundle, 'logger.sh');
    // Ready at once (fd 5 closed), then it would wait for ever for output that never comes.
    writeFileSync(logger, `#!/bin/sh\necho $$ > ${bundle}/logger.pid\nexec 5>&-\nexec /bin/sleep 600\n`, { mode: 0o755 });
    await create('t1');
    await service.start(v2.StartRequest.create({ id: 't1' }));
    const spec = { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['true'], cwd: '/' })) };
    await service.exec(v2.ExecProcessRequest.create({ id: 't1', execId: 'e1', spec, stdout: `binary://${logger}` }));
    const pid = Number(readFileSync(join(bundle, 'logger.pid'), 'utf8'));
    const alive = () => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
    expect(alive()).toBe(true);
    procs[0]!.exit(0);
    await service.wait(v2.WaitRequest.create({ id: 't1' }));
    await service.delete(v2.DeleteRequest.create({ id: 't1' }));
    for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 20));
    expect(alive()).toBe(false);
  });

  it('treats SIGKILL and SIGTERM to a stopped process as done, other signals as not found', async () => {
    const { service, procs, create } = setup();
    await create('t1');
    await service.start(v2.StartRequest.create({ id: 't1' }));
    await service.kill(v2.KillRequest.create({ id: 't1', signal: 15 }));
    expect(procs[0]!.signals).toEqual([15]);
    procs[0]!.exit(143);
    await service.wait(v2.WaitRequest.create({ id: 't1' }));
    await expect(service.kill(v2.KillRequest.create({ id: 't1', signal: 9 }))).resolves.toEqual({});
    expect(await code(service.kill(v2.KillRequest.create({ id: 't1', signal: 1 })))).toBe(5);
  });

  it('pauses and resumes only a running task', async () => {
    const { service, events, agentCalls, create } = setup();
    await create('t1');
    expect(await code(service.pause(v2.PauseRequest.create({ id: 't1' })))).toBe(9);
    await service.start(v2.StartRequest.create({ id: 't1' }));
    await service.pause(v2.PauseRequest.create({ id: 't1' }));
    expect((await service.state(v2.StateRequest.create({ id: 't1' }))).status).toBe(TaskStatus.PAUSED);
    expect(await code(service.pause(v2.PauseRequest.create({ id: 't1' })))).toBe(9);
    await service.resume(v2.ResumeRequest.create({ id: 't1' }));
    expect((await service.state(v2.StateRequest.create({ id: 't1' }))).status).toBe(TaskStatus.RUNNING);
    expect(agentCalls).toEqual(['pause', 'resume']);
    expect(events.map((e) => e.topic).slice(-2)).toEqual(['/tasks/paused', '/tasks/resumed']);
  });

  it('stops the sandbox and exits on Shutdown only when no task is left', async () => {
    const { service, procs, create, shutdowns, sandboxStops } = setup();
    await create('t1');
    await service.shutdown(v2.ShutdownRequest.create({ id: 't1' }));
    await flush();
    expect(shutdowns()).toBe(0);
    expect(sandboxStops).toEqual([]);
    await service.start(v2.StartRequest.create({ id: 't1' }));
    procs[0]!.exit(0);
    await service.wait(v2.WaitRequest.create({ id: 't1' }));
    await service.delete(v2.DeleteRequest.create({ id: 't1' }));
    await service.shutdown(v2.ShutdownRequest.create({ id: 't1' }));
    // Stopped before the answer, so containerd's `delete` never meets a half-stopped sandbox.
    expect(sandboxStops).toEqual(['sb']);
    await flush();
    expect(shutdowns()).toBe(1);
  });
});

describe('TaskService marking bundles for delete', () => {
  const marked = (bundle: string) => existsSync(join(bundle, CLEANED_UP_FILE));

  it('marks a pod member once deleted, and the VM owner only once the VM is stopped', async () => {
    const { service, procs, create, bundle } = setup();
    // Each task has its own bundle in containerd; here they share one, so check between steps.
    const finish = async (id: string, n: number) => {
      await service.start(v2.StartRequest.create({ id }));
      procs[n]!.exit(0);
      await service.wait(v2.WaitRequest.create({ id }));
      await service.delete(v2.DeleteRequest.create({ id }));
    };
    await create('sb');
    await create('member');
    await finish('member', 0);
    expect(marked(bundle)).toBe(true);
    rmSync(join(bundle, CLEANED_UP_FILE));
    await finish('sb', 1);
    expect(marked(bundle)).toBe(false);
    await service.shutdown(v2.ShutdownRequest.create({ id: 'sb' }));
    expect(marked(bundle)).toBe(true);
  });
});

describe('TaskService with a sandbox booted ahead of Create', () => {
  const ahead = (configPath: string | undefined, stops: string[], sandbox: Promise<Sandbox> = Promise.resolve(fakeSandbox('t1', stops))): PreparedSandbox => ({
    request: { namespace: 'default', sandboxId: 't1', bundle: '/nonexistent', spec: {}, configPath },
    sandbox,
    abort: new AbortController(),
  });

  it('takes the boot over when Create asks for the same sandbox and configuration', async () => {
    const stops: string[] = [];
    const { create, booted, bundle } = setup(ahead(undefined, stops));
    expect(await create('t1')).toEqual({ pid: 4242 });
    expect(booted).toEqual([]);
    expect(stops).toEqual([]);
    // delete, run without the runtime options, finds the run root in the bundle.
    expect(await recordedRunRoot(bundle)).toBe('/run/kata-ts-unit');
  });

  it('stops it and boots anew when Create names another configuration file', async () => {
    const stops: string[] = [];
    const { service, create, booted } = setup(ahead('/etc/other.toml', stops));
    await create('t1');
    await flush();
    expect(booted.map((r) => [r.sandboxId, r.configPath])).toEqual([['t1', undefined]]);
    expect(stops).toEqual(['t1']);
    await service.teardown();
    expect(stops).toEqual(['t1']); // the replacement is the fake of setup(), which records nothing
  });

  it('reports a failed boot at Create, and boots again for the next Create', async () => {
    const stops: string[] = [];
    const failed = Promise.reject(new Error('hypervisor.default_memroy: unknown key'));
    const { create, booted } = setup(ahead(undefined, stops, failed));
    await expect(create('t1')).rejects.toThrow('default_memroy');
    expect(booted).toEqual([]);
    await create('t1');
    expect(booted.map((r) => r.sandboxId)).toEqual(['t1']);
  });

  it('stops a boot that no Create ever took on teardown', async () => {
    const stops: string[] = [];
    const { service } = setup(ahead(undefined, stops));
    await service.teardown();
    expect(stops).toEqual(['t1']);
  });
});

describe('taskMethods', () => {
  it('maps every failure to the gRPC code containerd acts on, at the ttrpc boundary', async () => {
    const { taskMethods } = await import('../../shim/src/containerd/task-methods.js');
    const { AgentCallError } = await import('../../shim/src/sandbox/errors.js');
    const failing = {
      kill: async () => {
        throw new AgentCallError('SignalProcess', 9, 'container c1 is not running');
      },
      state: async () => {
        throw new Error('boom');
      },
    } as unknown as TaskService;
    const methods = taskMethods(failing);
    const ctx = {} as never;
    const kill = await methods.Kill!.prepare(v2.KillRequest.encode({ id: 'c1', signal: 15 }).finish())(ctx).catch((e: unknown) => e);
    expect(kill).toMatchObject({ code: 9, message: expect.stringContaining('not running') });
    const state = await methods.State!.prepare(v2.StateRequest.encode({ id: 'c1' }).finish())(ctx).catch((e: unknown) => e);
    expect(state).toMatchObject({ code: 2, message: 'boom' });
  });
});

describe('toTtrpcError', () => {
  it('gives containerd the codes it acts on', () => {
    expect(toTtrpcError(new HostCapabilityError('accel = "kvm" was asked for, but /dev/kvm is missing')).code).toBe(9); // FAILED_PRECONDITION
    expect(toTtrpcError(new NetnsGoneError('/var/run/netns/cni-1')).code).toBe(9);
    expect(toTtrpcError(new SpecError('mount /data: bind source /x does not exist on the host')).code).toBe(3); // INVALID_ARGUMENT
    expect(toTtrpcError(new SpecError("the spec shares the host's network namespace", true)).code).toBe(9);
    expect(toTtrpcError(new Error('something else')).code).toBe(2); // UNKNOWN
  });
});
