// A unary ttrpc client, used to forward events to containerd's TTRPC_ADDRESS.
// Calls share one connection and are matched to responses by stream id.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { decodeResponse, encodeRequest, type MetadataInit } from './envelope.js';
import { DEFAULT_MAX_MESSAGE_BYTES, encodeFrame, FrameDecoder, FrameTooLargeError, FrameType, type Frame } from './frame.js';
import type { MessageDecoder, MessageEncoder } from './method.js';
import { Code, TtrpcError } from './status.js';

export interface CallOptions {
  /** Sent to the server as timeout_nano and enforced locally (DEADLINE_EXCEEDED); none when absent or <= 0. */
  timeoutMs?: number;
  metadata?: MetadataInit;
  /** Gives up on the call (CANCELLED); the server is not told. */
  signal?: AbortSignal;
}

export interface TtrpcClientOptions {
  maxMessageBytes?: number;
}

interface PendingCall {
  resolve(payload: Uint8Array): void;
  reject(err: TtrpcError): void;
}

const MAX_STREAM_ID = 0xffff_ffff;

export class TtrpcClient {
  readonly #socket: Duplex;
  readonly #maxMessageBytes: number;
  readonly #decoder: FrameDecoder;
  readonly #pending = new Map<number, PendingCall>();
  #nextStreamId = 1; // client streams are odd: 1, 3, 5, ...
  #isClosed = false;

  /** Connects to a unix socket path. Rejects with UNAVAILABLE when nobody listens there. */
  static connect(path: string, options: TtrpcClientOptions = {}): Promise<TtrpcClient> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(path);
      const onError = (err: Error) => reject(new TtrpcError(Code.UNAVAILABLE, `ttrpc: dial ${path}: ${err.message}`, { cause: err }));
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(new TtrpcClient(socket, options));
      });
    });
  }

  /** Wraps a connected stream; the client owns it from now on. */
  constructor(socket: Duplex, options: TtrpcClientOptions = {}) {
    this.#socket = socket;
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#decoder = new FrameDecoder(this.#maxMessageBytes);
    socket.on('data', (chunk: Uint8Array) => this.#onData(chunk));
    socket.on('error', (err: Error) => this.#failAll(err));
    socket.on('close', () => this.#failAll());
  }

  /** True once the connection is gone; every later call fails with UNAVAILABLE. Reconnect with a new client. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Sends one request and resolves with the response payload, or rejects with a TtrpcError. */
  call(service: string, method: string, payload: Uint8Array, options: CallOptions = {}): Promise<Uint8Array> {
    if (this.#isClosed) return Promise.reject(closedError());
    if (options.signal?.aborted) return Promise.reject(cancelledError(options.signal));
    if (this.#nextStreamId > MAX_STREAM_ID) return Promise.reject(new TtrpcError(Code.RESOURCE_EXHAUSTED, 'ttrpc: stream ids exhausted'));
    const streamId = this.#nextStreamId;
    const timeoutMs = options.timeoutMs !== undefined && options.timeoutMs > 0 ? options.timeoutMs : undefined;
    let frame: Uint8Array;
    try {
      const data = encodeRequest({ service, method, payload, timeoutNano: Math.round((timeoutMs ?? 0) * 1e6), metadata: options.metadata });
      frame = encodeFrame({ streamId, type: FrameType.Request, flags: 0, data }, this.#maxMessageBytes);
    } catch (err) {
      const code = err instanceof FrameTooLargeError ? Code.RESOURCE_EXHAUSTED : Code.INVALID_ARGUMENT;
      return Promise.reject(new TtrpcError(code, `ttrpc: cannot send ${service}/${method}: ${(err as Error).message}`, { cause: err }));
    }
    this.#nextStreamId += 2;
    return new Promise<Uint8Array>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => settle(() => reject(cancelledError(options.signal)));
      const settle = (finish: () => void) => {
        this.#pending.delete(streamId);
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        finish();
      };
      this.#pending.set(streamId, { resolve: (p) => settle(() => resolve(p)), reject: (e) => settle(() => reject(e)) });
      if (timeoutMs !== undefined) {
        const expired = new TtrpcError(Code.DEADLINE_EXCEEDED, `ttrpc: ${service}/${method}: deadline exceeded after ${timeoutMs} ms`);
        timer = setTimeout(() => settle(() => reject(expired)), timeoutMs);
      }
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.#socket.write(frame);
    });
  }

  /** `call` with protobufjs classes on both ends. */
  async callMessage<Req, Res>(
    service: string,
    method: string,
    requestType: MessageEncoder<Req>,
    request: Req,
    responseType: MessageDecoder<Res>,
    options: CallOptions = {},
  ): Promise<Res> {
    const payload = await this.call(service, method, requestType.encode(request).finish(), options);
    try {
      return responseType.decode(payload);
    } catch (err) {
      throw new TtrpcError(Code.INTERNAL, `ttrpc: ${service}/${method}: cannot decode response: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Closes the connection; pending calls fail with UNAVAILABLE "ttrpc: closed". */
  close(): void {
    this.#failAll();
    this.#socket.destroy();
  }

  #onData(chunk: Uint8Array): void {
    for (const item of this.#decoder.feed(chunk)) {
      if (item instanceof FrameTooLargeError) {
        // The decoder skips the body, so only this call is lost, as with the Go client.
        this.#pending.get(item.streamId)?.reject(new TtrpcError(Code.RESOURCE_EXHAUSTED, `ttrpc: response ${item.message}`));
      } else if (item.type === FrameType.Response) {
        this.#onResponse(item);
      }
    }
  }

  #onResponse(frame: Frame): void {
    const pending = this.#pending.get(frame.streamId);
    if (pending === undefined) return; // already timed out or cancelled
    try {
      const { status, payload } = decodeResponse(frame.data);
      if (status.code === Code.OK) pending.resolve(payload);
      else pending.reject(new TtrpcError(status.code, status.message));
    } catch (err) {
      pending.reject(new TtrpcError(Code.INTERNAL, `ttrpc: malformed response: ${(err as Error).message}`, { cause: err }));
    }
  }

  #failAll(cause?: Error): void {
    this.#isClosed = true;
    for (const pending of [...this.#pending.values()]) pending.reject(closedError(cause));
  }
}

function closedError(cause?: Error): TtrpcError {
  return new TtrpcError(Code.UNAVAILABLE, 'ttrpc: closed', cause === undefined ? undefined : { cause });
}

function cancelledError(signal: AbortSignal | undefined): TtrpcError {
  return new TtrpcError(Code.CANCELLED, 'ttrpc: call cancelled', { cause: signal?.reason });
}
