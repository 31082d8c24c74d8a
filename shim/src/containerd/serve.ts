// The long-lived shim process: serves the Task API on its socket, logs to the
// bundle's `log` FIFO that containerd copies into its own log, and exits when
// containerd shuts it down with no task left (or on SIGTERM).
import { constants, createWriteStream, openSync, writeSync, closeSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger, type Logger } from '../../../common/log.js';
import { ensureRunRoot, Sandbox } from '../sandbox/sandbox.js';
import { TtrpcServer } from '../ttrpc/server.js';
import { EventPublisher } from './events.js';
import type { ShimFlags } from './flags.js';
import { applyAnnotations, loadConfig } from './config.js';
import { defaultShimSettings } from './shim-settings.js';
import { taskMethods, TASK_SERVICE } from './task-methods.js';
import { TaskService } from './task-service.js';
import { sizeVm } from './vm-sizing.js';

const READY_FD = 3;

function openLog(flags: ShimFlags): Logger {
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
  return createLogger({
    level: flags.debug ? 'debug' : 'info',
    write,
    fields: { runtime: 'io.containerd.kata-ts.v2', namespace: flags.namespace, id: flags.id, pid: process.pid },
  });
}

function tellStarter(message: string): void {
  try {
    writeSync(READY_FD, message + '\n');
    closeSync(READY_FD);
  } catch {
    // not started by `start` (run by hand)
  }
}

export async function serveCommand(flags: ShimFlags): Promise<void> {
  const log = openLog(flags);
  const events = new EventPublisher(process.env.TTRPC_ADDRESS, flags.namespace, log);
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
    await unlink(flags.socket).catch(() => undefined);
    process.exit(0);
  };
  const service: TaskService = new TaskService({
    namespace: flags.namespace,
    log,
    events,
    startSandbox: async (sandboxId, spec, configPath) => {
      const config = loadConfig(defaultShimSettings(flags.debug), configPath);
      const settings = applyAnnotations(config, spec.annotations);
      log.info('configuration', { source: config.source });
      await ensureRunRoot(settings);
      const size = sizeVm({ cpus: settings.cpus, memoryMiB: settings.memoryMiB }, spec.linux?.resources as never);
      return Sandbox.start(sandboxId, { ...settings, ...size }, log.child({ sandbox: sandboxId }));
    },
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
    await server.listen(flags.socket);
  } catch (err) {
    tellStarter(`cannot listen on ${flags.socket}: ${(err as Error).message}`);
    process.exit(1);
  }
  log.info('shim serving', { socket: flags.socket });
  tellStarter('ready');
}
