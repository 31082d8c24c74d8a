// The long-lived shim (what `start` becomes for a new sandbox): serves the
// Task API on its socket, logs to the bundle's `log` FIFO that containerd
// copies into its own log, and exits when containerd shuts it down with no
// task left (or on SIGTERM).
// It begins booting its sandbox VM before it loads anything else: containerd's
// first Create waits for the VM, so the Task API loads while the guest boots.
import { constants, createWriteStream, fstatSync, openSync, readFileSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger, type Logger } from '../../../common/log.js';
import { containerKind, podOf } from './annotations.js';
import type { ShimFlags } from './flags.js';
import { isValidId } from './ids.js';
import { bootSandbox, type SandboxRequest } from './sandbox-boot.js';
import type { OciSpecLike, PreparedSandbox } from './task-service.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import { SHIM_LOG_FILE, ShimLogFile } from './shim-log-file.js';

function openLog(flags: ShimFlags, copy: ShimLogFile): Logger {
  let write = (line: string) => void process.stderr.write(line + '\n');
  try {
    // containerd holds the FIFO open for reading, so this open does not block.
    const fd = openSync(join(process.cwd(), 'log'), constants.O_WRONLY | constants.O_NONBLOCK);
    const stream = createWriteStream('', { fd });
    stream.on('error', () => undefined); // containerd gone: nothing to log to
    write = (line) => void stream.write(line + '\n');
  } catch {
    // no log FIFO (run by hand): stderr
  }
  const toContainerd = write;
  return createLogger({
    level: flags.debug ? 'debug' : 'info',
    write: (line) => {
      toContainerd(line);
      copy.write(line);
    },
    fields: { runtime: 'io.containerd.kata-ts.v2', namespace: flags.namespace, id: flags.id, pid: process.pid },
  });
}

/** The runtime options containerd writes to `start`'s stdin (a pipe, or /dev/null when there are none). */
function readStartOptions(): Uint8Array {
  const stdin = fstatSync(0);
  return stdin.isFIFO() || stdin.isSocket() ? readFileSync(0) : new Uint8Array();
}

/**
 * What containerd's first Create will ask for, known from the bundle before it
 * arrives: the sandbox of this shim's own task. A task that joins another pod's
 * sandbox never gets its own shim; anything unreadable is left for Create to
 * report.
 */
async function sandboxAhead(flags: ShimFlags, spec: OciSpecLike, log: Logger): Promise<SandboxRequest | undefined> {
  const bundle = process.cwd();
  try {
    if (!isValidId(flags.id) || containerKind(spec.annotations) === 'pod-container') return undefined;
    const options = readStartOptions();
    const configPath = options.length > 0 ? (await import('./runtime-options.js')).configPathFromStartOptions(options) : undefined;
    return { namespace: flags.namespace, sandboxId: flags.id, bundle, spec, configPath };
  } catch (err) {
    log.debug('not booting ahead of Create', { error: (err as Error).message });
    return undefined;
  }
}

/**
 * The bundled shim's loader (shim/loader/) leaves this hook when there is no code cache for its
 * bundle yet: a shim that has served holds the compiled code of every path a new shim takes.
 */
function saveCodeCache(): void {
  (globalThis as { __kataTsSaveCodeCache?: () => void }).__kataTsSaveCodeCache?.();
}

/**
 * Serves until shut down; calls onListening once the socket accepts connections. spec: the
 * bundle's config.json, which `start` has read already.
 */
export async function serveCommand(flags: ShimFlags, spec: OciSpecLike, socket: string, onListening: () => Promise<void>): Promise<void> {
  const logFile = new ShimLogFile();
  const log = openLog(flags, logFile);
  const ahead = await sandboxAhead(flags, spec, log);
  let prepared: PreparedSandbox | undefined;
  if (ahead) {
    // QEMU first: loading the Task API is synchronous work that would hold up each step of the launch.
    let launched!: () => void;
    const qemuRuns = new Promise<void>((resolve) => (launched = resolve));
    const abort = new AbortController();
    prepared = { request: ahead, sandbox: bootSandbox(ahead, flags.debug, log, { onLaunched: launched, signal: abort.signal }), abort };
    await Promise.race([qemuRuns, prepared.sandbox.catch(() => undefined)]);
  }
  const [{ TtrpcServer }, { EventPublisher }, { taskMethods, TASK_SERVICE }, { TaskService }, { monitorSandbox }] = await Promise.all([
    import('../ttrpc/server.js'),
    import('./events.js'),
    import('./task-methods.js'),
    import('./task-service.js'),
    import('../metrics/shim-monitoring.js'),
  ]);
  const events = new EventPublisher(process.env.TTRPC_ADDRESS, flags.namespace, log);
  // Once up, the sandbox serves its metrics and status in its run folder (kata-ts monitor, kata-ts ps).
  const monitored = (req: SandboxRequest, booting: Promise<Sandbox>): Promise<Sandbox> => {
    const pod = podOf(req.spec.annotations);
    const identity = { id: req.sandboxId, namespace: req.namespace, ...(pod ? { pod } : {}) };
    monitorSandbox(booting, { identity, containers: () => service.containerStatuses(), droppedEvents: () => events.droppedCount, log });
    booting.then((sandbox) => logFile.open(join(sandbox.vmDir, SHIM_LOG_FILE)), () => undefined);
    return booting;
  };
  if (prepared) monitored(prepared.request, prepared.sandbox);
  const server = new TtrpcServer({ logger: log });
  let exiting = false;
  const exit = async (why: string) => {
    if (exiting) return;
    exiting = true;
    log.info('shim exiting', { why });
    await server.close().catch(() => undefined);
    await service.teardown().catch((err: Error) => log.error('teardown failed', { error: err.message }));
    await events.flush();
    events.close();
    await unlink(socket).catch(() => undefined);
    saveCodeCache();
    process.exit(0);
  };
  const service = new TaskService({
    namespace: flags.namespace,
    log,
    events,
    startSandbox: (req, signal) => monitored(req, bootSandbox(req, flags.debug, log, { signal })),
    ...(prepared ? { prepared } : {}),
    onShutdown: () => void exit('shutdown'),
  });
  server.register(TASK_SERVICE, taskMethods(service));
  process.on('SIGTERM', () => void exit('SIGTERM'));
  process.on('SIGINT', () => void exit('SIGINT'));
  process.on('uncaughtException', (err) => {
    log.error('uncaught exception', { error: err.stack ?? err.message });
    void exit('uncaught exception');
  });
  try {
    await server.listen(socket);
    log.info('shim serving', { socket, bootingAhead: prepared !== undefined });
    await onListening();
  } catch (err) {
    process.stderr.write(`cannot serve on ${socket}: ${(err as Error).message}\n`);
    await server.close().catch(() => undefined);
    await service.teardown().catch(() => undefined);
    await unlink(socket).catch(() => undefined);
    process.exit(1);
  }
}
