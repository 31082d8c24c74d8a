// A QMP client: greeting, capability negotiation, commands matched to their
// replies by id, and events. It speaks the protocol only; what to ask QEMU
// is the caller's business. Every command has a deadline, a line is bounded,
// and input that is not QMP ends the connection with an error: a wedged or
// misbehaving QEMU fails its callers, never the process.
import { EventEmitter } from 'node:events';
import net from 'node:net';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    message: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${message}`);
    this.name = 'QmpError';
  }
}

/** QEMU's replies and events are small; a line this long is not QMP. */
export const MAX_LINE_BYTES = 1024 * 1024;
export const DEFAULT_COMMAND_TIMEOUT_MS = 5000;

export class QmpProtocolError extends Error {
  constructor(message: string) {
    super(`QMP: ${message}`);
    this.name = 'QmpProtocolError';
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

function parseLine(line: string): Record<string, unknown> {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    throw new QmpProtocolError(`not JSON: ${line.slice(0, 200)}`);
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new QmpProtocolError(`not an object: ${line.slice(0, 200)}`);
  return msg as Record<string, unknown>;
}

export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  #nextId = 1;
  readonly #pending = new Map<string, Pending>();
  #buffer = '';
  #closed = false;
  #failure: Error | undefined;

  private constructor(private readonly socket: net.Socket) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.#onData(chunk));
    socket.on('close', () => this.#onClose());
    socket.on('error', () => undefined); // 'close' follows and fails what is pending
  }

  /** Connects, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    const socket = net.connect(path);
    const greeting = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no QMP greeting on ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      let data = '';
      const onData = (chunk: Buffer) => {
        data += chunk.toString('utf8');
        const nl = data.indexOf('\n');
        if (nl < 0 && data.length > MAX_LINE_BYTES) {
          clearTimeout(timer);
          socket.destroy();
          reject(new QmpProtocolError(`a greeting of more than ${MAX_LINE_BYTES} bytes`));
        }
        if (nl < 0) return;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('error', onError);
        if (nl + 1 < data.length) socket.unshift(Buffer.from(data.slice(nl + 1)));
        resolve(data.slice(0, nl));
      };
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      socket.on('data', onData);
      socket.once('error', onError);
    });
    let parsed: Record<string, unknown>;
    try {
      parsed = parseLine(greeting);
    } catch (err) {
      socket.destroy();
      throw err;
    }
    if (!('QMP' in parsed)) {
      socket.destroy();
      throw new QmpProtocolError(`unexpected greeting: ${greeting.slice(0, 200)}`);
    }
    const client = new QmpClient(socket);
    await client.execute('qmp_capabilities');
    return client;
  }

  /** Runs a command; rejects if QEMU does not answer within timeoutMs. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<T> {
    if (this.#closed) return Promise.reject(new Error(`QMP ${command}: connection closed${this.#failure ? ` (${this.#failure.message})` : ''}`));
    const id = String(this.#nextId++);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`QMP ${command}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    try {
      let nl: number;
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const line = this.#buffer.slice(0, nl).trim();
        this.#buffer = this.#buffer.slice(nl + 1);
        if (line) this.#onMessage(parseLine(line));
      }
      if (this.#buffer.length > MAX_LINE_BYTES) throw new QmpProtocolError(`a line of more than ${MAX_LINE_BYTES} bytes`);
    } catch (err) {
      // Not QMP: this connection is over; its callers learn why.
      this.#failure = err as Error;
      this.#buffer = '';
      this.socket.destroy();
    }
  }

  #onMessage(msg: Record<string, unknown>): void {
    if (typeof msg.event === 'string') {
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const pending = id ? this.#pending.get(id) : undefined;
    if (!pending) return;
    this.#pending.delete(id!);
    clearTimeout(pending.timer);
    if ('error' in msg) {
      const err = msg.error as { class?: string; desc?: string };
      pending.reject(new QmpError(pending.command, err.class ?? 'GenericError', err.desc ?? 'unknown error'));
    } else {
      pending.resolve(msg.return);
    }
  }

  #onClose(): void {
    this.#closed = true;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.#failure ? new QmpProtocolError(`${p.command}: ${this.#failure.message}`) : new Error(`QMP ${p.command}: connection closed`));
    }
    this.#pending.clear();
    this.emit('close');
  }

  close(): void {
    this.socket.destroy();
  }
}
