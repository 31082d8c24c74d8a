// One accepted ttrpc connection on the server side: decodes frames, runs each
// request concurrently, and writes each response as soon as its handler
// settles, so a long Wait never holds up a State on the same connection.
import type { Duplex } from 'node:stream';
import type { Logger } from '../../../common/log.js';
import { decodeRequest, encodeResponse, type RequestEnvelope } from './envelope.js';
import { encodeFrame, FrameDecoder, FrameTooLargeError, FrameType, type Frame } from './frame.js';
import type { CallContext, PreparedCall, UnaryMethod } from './method.js';
import { Code, statusFromError, TtrpcError, type WireStatus } from './status.js';

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly logger: Logger;
  readonly maxMessageBytes: number;
  /** Throws TtrpcError(UNIMPLEMENTED) for an unknown service or method. */
  lookup(service: string, method: string): UnaryMethod;
}

// setTimeout fires at once for delays past 2^31-1 ms; a deadline that far out is no deadline.
const MAX_TIMER_MS = 2 ** 31 - 1;
// After answering an oversized frame we wait this long for the answer to flush before cutting the socket.
const CLOSE_FLUSH_MS = 1000;

export class ServerConnection {
  readonly id: number;
  readonly #socket: Duplex;
  readonly #host: ConnectionHost;
  readonly #log: Logger;
  readonly #decoder: FrameDecoder;
  readonly #inFlight = new Map<number, AbortController>();
  readonly #idleWaiters: (() => void)[] = [];
  #isClosed = false;
  #isReadingPaused = false;

  constructor(id: number, socket: Duplex, host: ConnectionHost) {
    this.id = id;
    this.#socket = socket;
    this.#host = host;
    this.#log = host.logger.child({ connection_id: id });
    this.#decoder = new FrameDecoder(host.maxMessageBytes);
    socket.on('data', (chunk: Uint8Array) => this.#onData(chunk));
    socket.on('error', (err: Error) => this.#log.debug('ttrpc: connection error', { error: err }));
    socket.on('close', () => this.#shutdown());
  }

  get inFlightCount(): number {
    return this.#inFlight.size;
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    if (this.#inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Closes at once: in-flight handlers see their signal abort, and nothing more is written. */
  destroy(): void {
    this.#shutdown();
    this.#socket.destroy();
  }

  #onData(chunk: Uint8Array): void {
    try {
      for (const item of this.#decoder.feed(chunk)) {
        if (this.#isClosed) return;
        if (item instanceof FrameTooLargeError) return this.#rejectOversized(item);
        if (item.type === FrameType.Request) this.#onRequest(item);
        else this.#log.debug('ttrpc: ignoring non-request frame', { stream_id: item.streamId, type: item.type });
      }
    } catch (err) {
      // Only a bug gets here; it costs this connection, never the process.
      this.#log.error('ttrpc: closing connection after an internal error', { error: err });
      this.destroy();
    }
  }

  // We cannot trust a peer that sends a frame over the limit (usually garbage
  // bytes read as a length), so unlike the Go server, which skips the body and
  // carries on, we answer that stream and then close the connection.
  #rejectOversized(err: FrameTooLargeError): void {
    this.#log.error('ttrpc: closing connection after an oversized frame', {
      stream_id: err.streamId,
      length: err.length,
      max_length: err.maxLength,
    });
    this.#respond(err.streamId, { code: Code.RESOURCE_EXHAUSTED, message: err.message });
    this.#shutdown();
    const timer = setTimeout(() => this.#socket.destroy(), CLOSE_FLUSH_MS).unref();
    this.#socket.once('close', () => clearTimeout(timer));
    this.#socket.end(() => this.#socket.destroy());
  }

  #onRequest(frame: Frame): void {
    const streamId = frame.streamId;
    if (streamId % 2 === 0) {
      return this.#respond(streamId, { code: Code.INVALID_ARGUMENT, message: 'StreamID must be odd for client initiated streams' });
    }
    if (this.#inFlight.has(streamId)) {
      return this.#respond(streamId, { code: Code.INVALID_ARGUMENT, message: `StreamID ${streamId} is already in use` });
    }
    let request: RequestEnvelope;
    try {
      request = decodeRequest(frame.data);
    } catch (err) {
      return this.#respond(streamId, { code: Code.INVALID_ARGUMENT, message: `ttrpc: malformed request: ${(err as Error).message}` });
    }
    let call: PreparedCall;
    try {
      call = this.#host.lookup(request.service, request.method).prepare(request.payload);
    } catch (err) {
      const status = err instanceof TtrpcError ? statusFromError(err) : { code: Code.INTERNAL, message: `ttrpc: cannot decode payload: ${(err as Error).message}` };
      return this.#respond(streamId, status);
    }
    void this.#run(streamId, request, call);
  }

  async #run(streamId: number, request: RequestEnvelope, call: PreparedCall): Promise<void> {
    const controller = new AbortController();
    this.#inFlight.set(streamId, controller);
    const timeoutMs = request.timeoutNano > 0 ? Math.ceil(request.timeoutNano / 1e6) : undefined;
    const timer =
      timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS
        ? setTimeout(() => controller.abort(new TtrpcError(Code.DEADLINE_EXCEEDED, 'ttrpc: deadline exceeded')), timeoutMs)
        : undefined;
    const ctx: CallContext = {
      signal: controller.signal,
      deadlineMs: timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
      metadata: request.metadata,
      connectionId: this.id,
      service: request.service,
      method: request.method,
    };
    this.#log.debug('ttrpc: request', { stream_id: streamId, service: request.service, method: request.method });
    try {
      const payload = await call(ctx);
      this.#respond(streamId, { code: Code.OK, message: '' }, payload);
    } catch (err) {
      if (!(err instanceof TtrpcError)) {
        this.#log.warn('ttrpc: handler failed without a status code', { method: `${request.service}/${request.method}`, error: err });
      }
      this.#respond(streamId, statusFromError(err));
    } finally {
      clearTimeout(timer);
      this.#inFlight.delete(streamId);
      if (this.#inFlight.size === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  #respond(streamId: number, status: WireStatus, payload: Uint8Array = new Uint8Array(0)): void {
    if (this.#isClosed || !this.#socket.writable) return;
    let frame: Uint8Array;
    try {
      frame = encodeFrame({ streamId, type: FrameType.Response, flags: 0, data: encodeResponse({ status, payload }) }, this.#host.maxMessageBytes);
    } catch (err) {
      if (!(err instanceof FrameTooLargeError)) throw err;
      // Our own answer is too big for the peer to accept: tell it so instead.
      this.#log.error('ttrpc: response over the size limit', { stream_id: streamId, length: err.length });
      return this.#respond(streamId, { code: Code.RESOURCE_EXHAUSTED, message: err.message });
    }
    if (!this.#socket.write(frame)) this.#pauseReadingUntilDrained();
  }

  // A peer that leaves its answers unread would otherwise have us hold every
  // answer to everything it keeps sending: read on only once they drained.
  #pauseReadingUntilDrained(): void {
    if (this.#isReadingPaused) return;
    this.#isReadingPaused = true;
    this.#socket.pause();
    this.#socket.once('drain', () => {
      this.#isReadingPaused = false;
      this.#socket.resume();
    });
  }

  #shutdown(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    if (this.#decoder.isMidFrame) this.#log.debug('ttrpc: connection closed in the middle of a frame');
    for (const controller of this.#inFlight.values()) controller.abort(new TtrpcError(Code.CANCELLED, 'ttrpc: connection closed'));
  }
}
