// A scripted agent that misbehaves on purpose: the real Agent service
// definition, served by grpc-js on the unix socket the shim dials, where each
// method does what the script says (answer, hang, fail, send garbage or a huge
// message, drop the connection, flood its stream).
import { rm } from 'node:fs/promises';
import net from 'node:net';
import {
  Server,
  ServerCredentials,
  status,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceError,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { AgentService } from '../../proto/gen/agent.js';
import { unknownFieldHeader } from './unknown-field.js';

export type AgentMethod = keyof typeof AgentService;

export type Behaviour =
  /** A well-formed default answer; a stream ends at once. */
  | 'answer'
  /** Never answers, never ends. */
  | 'hang'
  /** A gRPC error status. */
  | 'error'
  /** A gRPC error status whose text is LOUD_ERROR_BYTES long. */
  | 'loud-error'
  /** A gRPC frame whose payload is no protobuf message. */
  | 'garbage'
  /** One well-formed message of HUGE_MESSAGE_BYTES. */
  | 'huge'
  /** Drops every connection while the call is open. */
  | 'drop'
  /** Streams only: chunk after chunk, for as long as the reader takes them. */
  | 'flood';

export type AgentScript = Partial<Record<AgentMethod, Behaviour>>;

export const HUGE_MESSAGE_BYTES = 64 * 1024 * 1024;
export const FLOOD_CHUNK_BYTES = 64 * 1024;
export const HOSTILE_ERROR = { code: status.FAILED_PRECONDITION, details: 'the hostile agent refuses' } as const;
export const LOUD_ERROR_BYTES = 4 * 1024 * 1024;

/** Field 1, length-delimited, 127 bytes long, then one byte: no decoder accepts it. */
const GARBAGE_PAYLOAD = Buffer.from([0x0a, 0x7f, 0x01]);

/** Bytes sent as they are, in place of an encoded reply. */
class RawReply {
  constructor(readonly bytes: Buffer) {}
}

export interface FakeAgentStats {
  /** Calls received, per method. */
  calls: Partial<Record<AgentMethod, number>>;
  /** Bytes of stream chunks handed to grpc-js (it accepts them only as fast as the reader's window lets). */
  streamedBytes: number;
  connections: number;
}

export interface FakeAgent {
  readonly socketPath: string;
  readonly stats: FakeAgentStats;
  close(): Promise<void>;
}

let hugeReply: RawReply | undefined;

/** Built once: a protobuf message holding one HUGE_MESSAGE_BYTES unknown field. */
function huge(): RawReply {
  if (!hugeReply) {
    hugeReply = new RawReply(Buffer.concat([unknownFieldHeader(HUGE_MESSAGE_BYTES), Buffer.alloc(HUGE_MESSAGE_BYTES)]));
  }
  return hugeReply;
}

/** The generated service definition, except that a RawReply goes out unencoded. */
function rawCapableDefinition(): typeof AgentService {
  const entries = Object.entries(AgentService).map(([name, d]) => {
    const encode = d.responseSerialize as (v: unknown) => Buffer;
    return [name, { ...d, responseSerialize: (v: unknown) => (v instanceof RawReply ? v.bytes : encode(v)) }];
  });
  return Object.fromEntries(entries) as unknown as typeof AgentService;
}

export async function startFakeAgent(socketPath: string, script: AgentScript = {}): Promise<FakeAgent> {
  const stats: FakeAgentStats = { calls: {}, streamedBytes: 0, connections: 0 };
  const sockets = new Set<net.Socket>();
  const dropConnections = () => {
    for (const s of sockets) s.destroy();
  };

  const handlers: UntypedServiceImplementation = {};
  for (const [name, d] of Object.entries(AgentService) as [AgentMethod, (typeof AgentService)[AgentMethod]][]) {
    const behaviour = script[name] ?? 'answer';
    if (behaviour === 'flood' && !d.responseStream) throw new Error(`${name} is no stream: it cannot flood`);
    const count = () => (stats.calls[name] = (stats.calls[name] ?? 0) + 1);
    // Decoding no bytes gives the response type's default message.
    const defaultAnswer = () => d.responseDeserialize(Buffer.alloc(0));
    handlers[name] = d.responseStream
      ? (call: ServerWritableStream<unknown, unknown>) => {
          count();
          streamBehaviour(behaviour, call, stats, dropConnections);
        }
      : (_call: ServerUnaryCall<unknown, unknown>, reply: sendUnaryData<unknown>) => {
          count();
          unaryBehaviour(behaviour, reply, defaultAnswer, dropConnections);
        };
  }

  const server = new Server();
  server.addService(rawCapableDefinition(), handlers);
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  // Our own listener, as the real agent has: the fake can then drop connections under a call.
  const listener = net.createServer((socket) => {
    stats.connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // The peer may vanish at any moment; that is the point of these tests.
    socket.on('error', () => undefined);
    injector.injectConnection(socket);
  });
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(socketPath, resolve);
  });

  return {
    socketPath,
    stats,
    close: async () => {
      dropConnections();
      server.forceShutdown();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}

function unaryBehaviour(behaviour: Behaviour, reply: sendUnaryData<unknown>, defaultAnswer: () => unknown, dropConnections: () => void): void {
  switch (behaviour) {
    case 'answer':
      return reply(null, defaultAnswer());
    case 'hang':
      return;
    case 'error':
      return reply({ ...HOSTILE_ERROR, name: 'Error', message: HOSTILE_ERROR.details } as ServiceError, null);
    case 'loud-error': {
      const details = 'no '.repeat(LOUD_ERROR_BYTES / 3);
      return reply({ code: HOSTILE_ERROR.code, details, name: 'Error', message: details } as ServiceError, null);
    }
    case 'garbage':
      return reply(null, new RawReply(GARBAGE_PAYLOAD));
    case 'huge':
      return reply(null, huge());
    case 'drop':
      // After the request arrived, before any answer.
      return void setImmediate(dropConnections);
    case 'flood':
      return; // refused by startFakeAgent
  }
}

function streamBehaviour(behaviour: Behaviour, call: ServerWritableStream<unknown, unknown>, stats: FakeAgentStats, dropConnections: () => void): void {
  switch (behaviour) {
    case 'answer':
      return void call.end();
    case 'hang':
      return;
    case 'error':
    case 'loud-error':
      // grpc-js sends a stream's status on 'error'; destroy() would end it without any.
      return void call.emit('error', Object.assign(new Error(HOSTILE_ERROR.details), HOSTILE_ERROR));
    case 'garbage':
      call.write(new RawReply(GARBAGE_PAYLOAD));
      return;
    case 'huge':
      call.write(huge());
      return;
    case 'drop':
      call.write({ data: Buffer.from('some output, then the line drops\n') });
      return void setImmediate(dropConnections);
    case 'flood':
      return flood(call, stats);
  }
}

/** Writes chunks until grpc-js pushes back, then again on drain; stops when the call ends. */
function flood(call: ServerWritableStream<unknown, unknown>, stats: FakeAgentStats): void {
  const chunk = { data: Buffer.alloc(FLOOD_CHUNK_BYTES, 'x') };
  let open = true;
  const stop = () => (open = false);
  call.once('cancelled', stop);
  call.once('close', stop);
  call.once('error', stop);
  const pump = () => {
    while (open) {
      stats.streamedBytes += FLOOD_CHUNK_BYTES;
      if (!call.write(chunk)) return void call.once('drain', pump);
    }
  };
  pump();
}
