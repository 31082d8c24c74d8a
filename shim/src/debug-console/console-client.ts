// `kata-ts exec`'s side of a debug console session: asks the sandbox's shim
// for the upgrade, then carries the operator's terminal both ways until the
// exit frame. Nothing waits for ever: the shim must answer the upgrade
// within a deadline, and a connection that drops ends the session.
import { request } from 'node:http';
import type { Readable, Writable } from 'node:stream';
import type { Socket } from 'node:net';
import { DEBUG_CONSOLE_PATH, DEBUG_CONSOLE_PROTOCOL, encodeConsoleRequest, type ConsoleRequest } from './console-request.js';
import { encodeFrame, FrameDecoder, FrameType, parseExit, resizeFrame } from './frames.js';

/** The shim answers once the process runs in the guest: one agent call. */
const UPGRADE_TIMEOUT_MS = 60_000;

/** The shim refused (the console is off, a bad request) or could not start the process; `message` is its reason. */
export class DebugConsoleError extends Error {
  constructor(
    message: string,
    readonly httpStatus?: number,
  ) {
    super(message);
    this.name = 'DebugConsoleError';
  }
}

export interface TerminalIo {
  input: Readable;
  output: Writable;
  /** Calls back with the terminal's new size whenever it changes; returns the unsubscribe. */
  onResize?: (listener: (rows: number, columns: number) => void) => () => void;
}

function upgrade(socketPath: string, consoleRequest: ConsoleRequest): Promise<{ socket: Socket; head: Buffer }> {
  return new Promise((resolve, reject) => {
    const signal = AbortSignal.timeout(UPGRADE_TIMEOUT_MS);
    const req = request({
      socketPath,
      path: DEBUG_CONSOLE_PATH,
      method: 'POST',
      agent: false,
      signal,
      headers: { connection: 'Upgrade', upgrade: DEBUG_CONSOLE_PROTOCOL, [DEBUG_CONSOLE_PROTOCOL]: encodeConsoleRequest(consoleRequest) },
    });
    req.on('upgrade', (_res, socket: Socket, head: Buffer) => resolve({ socket, head }));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
      res.on('end', () => reject(new DebugConsoleError(Buffer.concat(chunks).toString('utf8').trim() || `HTTP ${res.statusCode}`, res.statusCode)));
      res.on('error', (err) => reject(new DebugConsoleError(err.message)));
    });
    req.on('error', (err) =>
      reject(new DebugConsoleError(signal.aborted ? `the shim did not start the console within ${UPGRADE_TIMEOUT_MS} ms` : `${socketPath}: ${err.message}`)),
    );
    req.end();
  });
}

/** Runs the session; resolves with the process's exit status. */
export async function runDebugConsole(socketPath: string, consoleRequest: ConsoleRequest, io: TerminalIo): Promise<number> {
  const { socket, head } = await upgrade(socketPath, consoleRequest);
  const decoder = new FrameDecoder();
  const onInput = (chunk: Buffer) => {
    if (!socket.write(encodeFrame(FrameType.input, chunk))) {
      io.input.pause();
      socket.once('drain', () => io.input.resume());
    }
  };
  const onInputEnd = () => socket.writable && socket.write(encodeFrame(FrameType.inputEnd));
  const unsubscribe = io.onResize?.((rows, columns) => socket.writable && socket.write(resizeFrame(rows, columns)));
  io.input.on('data', onInput);
  io.input.once('end', onInputEnd);
  try {
    return await new Promise<number>((resolve, reject) => {
      const take = (chunk: Buffer) => {
        try {
          for (const frame of decoder.push(chunk)) {
            if (frame.type === FrameType.output) {
              if (!io.output.write(frame.payload)) {
                socket.pause();
                io.output.once('drain', () => socket.resume());
              }
            } else if (frame.type === FrameType.exit) resolve(parseExit(frame.payload));
            else if (frame.type === FrameType.failure) reject(new DebugConsoleError(frame.payload.toString('utf8')));
          }
        } catch (err) {
          reject(err as Error);
        }
      };
      if (head.length > 0) take(head);
      socket.on('data', take);
      socket.once('error', (err) => reject(new DebugConsoleError(`the connection to the shim failed: ${err.message}`)));
      socket.once('close', () => reject(new DebugConsoleError('the shim ended the session without an exit status (the sandbox stopped?)')));
    });
  } finally {
    io.input.off('data', onInput);
    io.input.off('end', onInputEnd);
    io.input.pause();
    unsubscribe?.();
    socket.destroy();
  }
}
