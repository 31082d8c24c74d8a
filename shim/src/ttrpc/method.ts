// How a service method is described to the server: decode the payload, run
// the handler, encode its result. `method()` builds one from protobufjs
// classes, so registering a typed method is a single line.
import type { Metadata } from './envelope.js';

/** What a handler knows about the call besides its request. */
export interface CallContext {
  /** Aborted at the client's deadline (reason: DEADLINE_EXCEEDED) or when the connection closes (reason: CANCELLED). */
  readonly signal: AbortSignal;
  /** Absolute deadline in epoch ms, when the client sent a timeout. */
  readonly deadlineMs: number | undefined;
  readonly metadata: Metadata;
  readonly connectionId: number;
  readonly service: string;
  readonly method: string;
}

/** A decoded request bound to its handler, waiting for a context to run in. */
export type PreparedCall = (ctx: CallContext) => Promise<Uint8Array>;

/**
 * A unary method. `prepare` throws if the payload does not decode; the server
 * then answers INTERNAL, as the Go ttrpc server does, and runs no handler.
 */
export interface UnaryMethod {
  prepare(payload: Uint8Array): PreparedCall;
}

/** The static half of a protobufjs message class that decodes requests. */
export interface MessageDecoder<T> {
  decode(bytes: Uint8Array): T;
}

/** The static half of a protobufjs message class that encodes responses. */
export interface MessageEncoder<T> {
  encode(message: T): { finish(): Uint8Array };
}

export type Handler<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;

/** `method(StateRequest, StateResponse, (req, ctx) => service.state(req, ctx))` */
export function method<Req, Res>(request: MessageDecoder<Req>, response: MessageEncoder<Res>, handler: Handler<Req, Res>): UnaryMethod {
  return {
    prepare(payload) {
      const decoded = request.decode(payload);
      return async (ctx) => response.encode(await handler(decoded, ctx)).finish();
    },
  };
}

/** The methods of one service, by bare rpc name ("State", "Wait"). */
export type ServiceMethods = Readonly<Record<string, UnaryMethod>>;
