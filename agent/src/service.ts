// The grpc-js implementation of the Agent service: decodes requests, calls
// the sandbox, and turns every failure into a precise gRPC status.
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { status, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData, type ServiceError } from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import type { NativeAddon } from '../../native/native.js';
import {
  HealthCheckResponse_ServingStatus,
  type AgentServer,
  type Empty,
  type OOMEvent,
  type OutputChunk,
  type ProcessRef,
} from '../../proto/gen/agent.js';
import { toAgentError, invalidArgument } from './errors.js';
import { setupClone } from './clone-setup.js';
import { readGuestMetrics } from './guest-metrics.js';
import { updateInterface, updateRoutes } from './guest-network.js';
import type { OutputPipe } from './output-pipe.js';
import type { Sandbox } from './sandbox.js';

const POWER_OFF_AFTER_MS = 500;

export const AGENT_VERSION = '0.1.0';

export interface ServiceContext {
  sandbox: Sandbox;
  native: NativeAddon;
  log: Logger;
  channel: string;
  initUptimeMs: number;
  listeningUptimeMs: () => number;
  /** Called after DestroySandbox has answered. */
  onDestroyed: () => void;
}

export async function uptimeMs(): Promise<number> {
  const text = await readFile('/proc/uptime', 'utf8');
  return Math.round(Number(text.split(' ')[0]) * 1000);
}

function unary<Req, Res>(ctx: ServiceContext, name: string, fn: (req: Req) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    fn(call.request).then(
      (res) => callback(null, res),
      (err) => {
        const e = toAgentError(err);
        const level = e.code === status.INTERNAL ? 'error' : 'debug';
        ctx.log[level]('request failed', { method: name, code: status[e.code], error: e.message });
        callback({ code: e.code, details: e.message, name: e.name, message: e.message } as ServiceError, null);
      },
    );
  };
}

function readOutput(ctx: ServiceContext, pick: (ref: ProcessRef) => OutputPipe) {
  return (call: ServerWritableStream<ProcessRef, OutputChunk>) => {
    try {
      const pipe = pick(call.request);
      pipe.attach(
        {
          write: (chunk) => call.write({ data: chunk }),
          once: (event, listener) => call.once(event, listener),
          end: () => call.end(),
        },
        (listener) => call.once('cancelled', listener),
      );
    } catch (err) {
      const e = toAgentError(err);
      // grpc-js sends a stream's status on 'error'; destroy() would end it with none, and the host would wait.
      call.emit('error', Object.assign(new Error(e.message), { code: e.code, details: e.message }));
    }
  };
}

export function createAgentService(ctx: ServiceContext): AgentServer {
  const { sandbox } = ctx;
  const proc = (ref: ProcessRef) => sandbox.process(ref.containerId, ref.execId);
  const empty = {};
  return {
    createSandbox: unary(ctx, 'CreateSandbox', async (req) => ({
      sharedFsMountPoint: await sandbox.create(req.sandboxId, req.hostname, req.sharedFsTag, req.outputFlushMs, req.debugConsoleEnabled),
    })),
    destroySandbox: unary(ctx, 'DestroySandbox', async (req) => {
      await sandbox.destroy(req.gracePeriodMs);
      // The host quits the VM once it has this answer; powering off is the fallback, late
      // enough that the answer is out first.
      setTimeout(ctx.onDestroyed, POWER_OFF_AFTER_MS);
      return empty;
    }),
    createContainer: unary(ctx, 'CreateContainer', async (req) => {
      await sandbox.createContainer(req.containerId, req.ociSpecJson, req.rootfsPath, req);
      return {};
    }),
    startContainer: unary(ctx, 'StartContainer', async (req) => ({ pid: await sandbox.startContainer(req.containerId) })),
    removeContainer: unary(ctx, 'RemoveContainer', async (req) => {
      await sandbox.removeContainer(req.containerId, req.force);
      return empty;
    }),
    pauseContainer: unary(ctx, 'PauseContainer', async (req) => {
      await sandbox.container(req.containerId).pause();
      return empty;
    }),
    resumeContainer: unary(ctx, 'ResumeContainer', async (req) => {
      await sandbox.container(req.containerId).resume();
      return empty;
    }),
    updateContainer: unary(ctx, 'UpdateContainer', async (req) => {
      await sandbox.container(req.containerId).update(req.resourcesJson);
      return empty;
    }),
    statsContainer: unary(ctx, 'StatsContainer', (req) => sandbox.container(req.containerId).stats()),
    listProcesses: unary(ctx, 'ListProcesses', async (req) => ({ processes: await sandbox.container(req.containerId).listProcesses() })),
    execProcess: unary(ctx, 'ExecProcess', async (req) => ({
      pid: await sandbox.container(req.containerId).exec(req.execId, req.processJson),
    })),
    waitProcess: unary(ctx, 'WaitProcess', async (req) => {
      const exit = await proc(req).wait();
      return { exitStatus: exit.status, exitedAtMs: exit.exitedAtMs };
    }),
    signalProcess: unary(ctx, 'SignalProcess', async (req) => {
      if (req.signal < 0 || req.signal > 64) throw invalidArgument(`signal ${req.signal} is out of range`);
      await sandbox.signal(req.containerId, req.execId, req.signal, req.all);
      return empty;
    }),
    readStdout: readOutput(ctx, (ref) => proc(ref).stdout),
    readStderr: readOutput(ctx, (ref) => proc(ref).stderr),
    writeStdin: unary(ctx, 'WriteStdin', async (req) => ({ length: await proc(req).writeStdin(req.data) })),
    closeStdin: unary(ctx, 'CloseStdin', async (req) => {
      proc(req).closeStdin();
      return empty;
    }),
    ttyWinResize: unary(ctx, 'TtyWinResize', async (req) => {
      proc(req).resize(req.rows, req.columns);
      return empty;
    }),
    updateInterface: unary(ctx, 'UpdateInterface', async (req) => {
      if (!req.interface) throw invalidArgument('UpdateInterface needs an interface');
      await updateInterface(await sandbox.container(req.containerId).networkPid(), req.interface);
      return empty;
    }),
    updateRoutes: unary(ctx, 'UpdateRoutes', async (req) => {
      await updateRoutes(await sandbox.container(req.containerId).networkPid(), req.routes);
      return empty;
    }),
    getOomEvent: (call: ServerUnaryCall<Empty, OOMEvent>, callback: sendUnaryData<OOMEvent>) => {
      // A long poll: answered at the next OOM kill; a cancelled call just stops waiting.
      void sandbox.oom.next(call).then((containerId) => callback(null, { containerId }));
    },
    getGuestDetails: unary(ctx, 'GetGuestDetails', async () => ({
      kernelRelease: os.release(),
      agentVersion: AGENT_VERSION,
      cpus: os.cpus().length,
      memoryBytes: os.totalmem(),
      channel: ctx.channel,
      agentListeningUptimeMs: ctx.listeningUptimeMs(),
      initUptimeMs: ctx.initUptimeMs,
      uptimeMs: await uptimeMs(),
    })),
    check: unary(ctx, 'Check', async () => ({ status: HealthCheckResponse_ServingStatus.SERVING })),
    getGuestMetrics: unary(ctx, 'GetGuestMetrics', () => readGuestMetrics(sandbox.containersCgroup)),
    startDebugConsole: unary(ctx, 'StartDebugConsole', async (req) => ({ pid: await sandbox.startDebugConsole(req) })),
    setupClone: unary(ctx, 'SetupClone', async (req) => {
      const done = await setupClone(ctx.native, req);
      ctx.log.info('clone set up', { devicesWaitMs: done.devicesWaitMs, macs: req.macs.length, sharedFs: req.sharedFs });
      return done;
    }),
  };
}
