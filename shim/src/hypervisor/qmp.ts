// A QMP client: greeting, capability negotiation, commands matched to their
// replies by id, and events. It speaks the protocol only; what to ask QEMU
// is the caller's business.
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

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  #nextId = 1;
  readonly #pending = new Map<string, Pending>();
  #buffer = '';
  #closed = false;

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
    if (!('QMP' in (JSON.parse(greeting) as object))) {
      socket.destroy();
      throw new Error(`unexpected QMP greeting: ${greeting}`);
    }
    const client = new QmpClient(socket);
    await client.execute('qmp_capabilities');
    return client;
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error(`QMP ${command}: connection closed`));
    const id = String(this.#nextId++);
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    let nl: number;
    while ((nl = this.#buffer.indexOf('\n')) >= 0) {
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (line) this.#onMessage(JSON.parse(line) as Record<string, unknown>);
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
    if ('error' in msg) {
      const err = msg.error as { class?: string; desc?: string };
      pending.reject(new QmpError(pending.command, err.class ?? 'GenericError', err.desc ?? 'unknown error'));
    } else {
      pending.resolve(msg.return);
    }
  }

  #onClose(): void {
    this.#closed = true;
    for (const p of this.#pending.values()) p.reject(new Error(`QMP ${p.command}: connection closed`));
    this.#pending.clear();
    this.emit('close');
  }

  close(): void {
    this.socket.destroy();
  }
}
