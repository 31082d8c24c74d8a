// The shim's side of a debug console session: answers the upgrade request on
// the shim's endpoint, starts the process in the guest, and carries terminal
// bytes both ways until the process exits. When the client goes first, the
// process is killed: nothing is left running that nobody can reach.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../../common/log.js';
import { DebugConsoleDisabledError } from '../sandbox/errors.js';
import type { ProcessHandle } from '../sandbox/process-handle.js';
import { ConsoleRequestError, DEBUG_CONSOLE_PATH, DEBUG_CONSOLE_PROTOCOL, parseConsoleRequest } from './console-request.js';
import { encodeOutput, exitFrame, FrameDecoder, FrameType, encodeFrame, parseResize, type Frame } from './frames.js';

export interface DebugConsoleHost {
  readonly id: string;
  startDebugConsole(execId: string, args: string[], env: string[], size: { rows: number; columns: number }): Promise<{ pid: number; process: ProcessHandle }>;
}

const SIGKILL = 9;

function refuse(socket: Duplex, code: number, reason: string, message: string): void {
  const body = `${message}\n`;
  socket.end(`HTTP/1.1 ${code} ${reason}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** Handles an upgrade request made to the shim's endpoint. */
export async function serveDebugConsole(req: IncomingMessage, socket: Duplex, host: DebugConsoleHost, log: Logger): Promise<void> {
  socket.on('error', () => undefined);
  const path = (req.url ?? '/').split('?')[0];
  if (path !== DEBUG_CONSOLE_PATH || req.method !== 'POST') return refuse(socket, 404, 'Not Found', `upgrade only POST ${DEBUG_CONSOLE_PATH}`);
  if (req.headers.upgrade?.toLowerCase() !== DEBUG_CONSOLE_PROTOCOL) return refuse(socket, 400, 'Bad Request', `Upgrade: ${DEBUG_CONSOLE_PROTOCOL} only`);
  let request;
  try {
    request = parseConsoleRequest(req.headers[DEBUG_CONSOLE_PROTOCOL]);
  } catch (err) {
    return refuse(socket, 400, 'Bad Request', (err as ConsoleRequestError).message);
  }
  const execId = `debug-${randomBytes(6).toString('hex')}`;
  let started;
  try {
    started = await host.startDebugConsole(execId, request.command, request.env, { rows: request.rows, columns: request.columns });
  } catch (err) {
    if (err instanceof DebugConsoleDisabledError) {
      log.warn('debug console refused: it is off', { sandbox: host.id });
      return refuse(socket, 403, 'Forbidden', err.message);
    }
    log.warn('debug console could not start', { sandbox: host.id, error: (err as Error).message });
    return refuse(socket, 502, 'Bad Gateway', `sandbox ${host.id}: ${(err as Error).message}`);
  }
  if (socket.destroyed) {
    await started.process.signal(SIGKILL).catch(() => undefined);
    return;
  }
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${DEBUG_CONSOLE_PROTOCOL}\r\nConnection: Upgrade\r\n\r\n`);
  log.info('debug console session open', { sandbox: host.id, exec: execId, command: request.command[0], pid: started.pid });
  await bridge(socket, started.process, log.child({ exec: execId }));
}

async function bridge(socket: Duplex, process: ProcessHandle, log: Logger): Promise<void> {
  let exited = false;
  socket.once('close', () => {
    if (exited) return;
    log.info('debug console client left; killing its process');
    void process.signal(SIGKILL).catch(() => undefined);
  });
  const forwarded = forwardOutput(process, socket);
  const input = forwardInput(socket, process, log);
  try {
    const [exit] = await Promise.all([process.wait(), forwarded]);
    exited = true;
    socket.end(exitFrame(exit.status));
    log.info('debug console session ended', { status: exit.status });
  } catch (err) {
    exited = true;
    if (!socket.destroyed) socket.end(encodeFrame(FrameType.failure, Buffer.from((err as Error).message)));
    log.warn('debug console session failed', { error: (err as Error).message });
  }
  await input;
}

/** Terminal output to the client, pausing the agent's stream while the client lags. */
async function forwardOutput(process: ProcessHandle, socket: Duplex): Promise<void> {
  for await (const chunk of process.stdout as AsyncIterable<Buffer>) {
    if (socket.destroyed) continue; // drained so the process's wait can end
    let full = false;
    for (const frame of encodeOutput(chunk)) full = !socket.write(frame) || full;
    if (full) await Promise.race([once(socket, 'drain'), once(socket, 'close')]);
  }
}

/** Client frames to the process, one at a time and in order. */
async function forwardInput(socket: Duplex, process: ProcessHandle, log: Logger): Promise<void> {
  const decoder = new FrameDecoder();
  let stdinClosed = false;
  const apply = async (frame: Frame) => {
    if (frame.type === FrameType.input && !stdinClosed) await process.write(frame.payload);
    else if (frame.type === FrameType.resize) {
      const { rows, columns } = parseResize(frame.payload);
      await process.resize(rows, columns);
    } else if (frame.type === FrameType.inputEnd && !stdinClosed) {
      stdinClosed = true;
      await process.closeStdin();
    }
  };
  try {
    for await (const chunk of socket as AsyncIterable<Buffer>) {
      for (const frame of decoder.push(chunk)) {
        // Input for a process that is going is dropped; its exit ends the session.
        await apply(frame).catch((err: Error) => log.debug('debug console input dropped', { error: err.message }));
      }
    }
  } catch (err) {
    // A client that sends what no kata-ts sends: end the session (the close kills the process).
    log.warn('debug console client broke the protocol', { error: (err as Error).message });
    socket.destroy();
  }
}
