import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../common/log.js';
import { containerd, google, ttrpc } from '../../proto/gen/containerd/containerd.js';
import { decodeRequest, type RequestEnvelope } from '../../shim/src/ttrpc/envelope.js';
import { Code, encodeFrame, FrameDecoder, FrameType, method, TtrpcClient, TtrpcError, TtrpcServer } from '../../shim/src/ttrpc/index.js';

const dir = mkdtempSync(join(tmpdir(), 'kata-ts-ttrpc-client-'));
let socketCount = 0;
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Reply = (streamId: number, responseBody: Uint8Array) => void;

/** A scripted peer: records each request and lets the test decide how (and whether) to answer. */
async function startRawServer(onRequest: (req: RequestEnvelope, streamId: number, reply: Reply, socket: net.Socket) => void) {
  const requests: { streamId: number; req: RequestEnvelope }[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const decoder = new FrameDecoder();
    const reply: Reply = (streamId, body) => socket.write(encodeFrame({ streamId, type: FrameType.Response, flags: 0, data: body }, Infinity));
    socket.on('data', (chunk) => {
      for (const frame of decoder.feed(chunk)) {
        if (frame instanceof Error) continue;
        const req = decodeRequest(frame.data);
        requests.push({ streamId: frame.streamId, req });
        onRequest(req, frame.streamId, reply, socket);
      }
    });
    socket.on('error', () => {});
  });
  const path = join(dir, `c${++socketCount}.sock`);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  cleanups.push(() => sockets.forEach((s) => s.destroy()));
  return { path, requests };
}

async function connect(path: string, maxMessageBytes?: number): Promise<TtrpcClient> {
  const client = await TtrpcClient.connect(path, maxMessageBytes === undefined ? {} : { maxMessageBytes });
  cleanups.push(() => client.close());
  return client;
}

const ok = (payload: Uint8Array) => ttrpc.Response.encode({ status: { code: 0 }, payload }).finish();
const echo = (req: RequestEnvelope, streamId: number, reply: Reply) => reply(streamId, ok(req.payload));

describe('TtrpcClient', () => {
  it('sends odd stream ids from 1 up, with service, method, payload, timeout and metadata', async () => {
    const { path, requests } = await startRawServer(echo);
    const client = await connect(path);
    const payload = Uint8Array.from([1, 2, 3]);
    expect([...(await client.call('svc.A', 'M1', payload, { timeoutMs: 1500, metadata: { k: 'v', multi: ['x', 'y'] } }))]).toEqual([1, 2, 3]);
    await client.call('svc.A', 'M2', new Uint8Array(0));
    await client.call('svc.A', 'M3', new Uint8Array(0));
    expect(requests.map((r) => r.streamId)).toEqual([1, 3, 5]);
    const first = requests[0]!.req;
    expect(first).toMatchObject({ service: 'svc.A', method: 'M1', timeoutNano: 1_500_000_000 });
    expect([...first.metadata]).toEqual([['k', ['v']], ['multi', ['x', 'y']]]);
    expect(requests[1]!.req.timeoutNano).toBe(0);
  });

  it('matches responses that arrive out of order to their calls', async () => {
    const held: (() => void)[] = [];
    const { path } = await startRawServer((req, streamId, reply) => {
      held.push(() => echo(req, streamId, reply));
      if (held.length === 2) held.reverse().forEach((send) => send());
    });
    const client = await connect(path);
    const [a, b] = await Promise.all([client.call('s', 'm', Uint8Array.from([0xa])), client.call('s', 'm', Uint8Array.from([0xb]))]);
    expect([[...a], [...b]]).toEqual([[0xa], [0xb]]);
  });

  it('treats a zero-length response body as success with an empty payload', async () => {
    const { path } = await startRawServer((_req, streamId, reply) => reply(streamId, new Uint8Array(0)));
    const client = await connect(path);
    expect((await client.call('containerd.services.events.ttrpc.v1.Events', 'Forward', Uint8Array.from([1]))).length).toBe(0);
  });

  it('turns a non-OK status into a TtrpcError with its code and message', async () => {
    const { path } = await startRawServer((_req, streamId, reply) =>
      reply(streamId, ttrpc.Response.encode({ status: { code: Code.NOT_FOUND, message: 'task c1 not found' } }).finish()),
    );
    const client = await connect(path);
    const err: unknown = await client.call('s', 'm', new Uint8Array(0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TtrpcError);
    expect(err).toMatchObject({ code: Code.NOT_FOUND, message: 'task c1 not found' });
  });

  it('fails a call with DEADLINE_EXCEEDED at its timeout and ignores the late answer', async () => {
    const late: (() => void)[] = [];
    const { path } = await startRawServer((req, streamId, reply) => {
      if (req.method === 'Slow') late.push(() => echo(req, streamId, reply));
      else echo(req, streamId, reply);
    });
    const client = await connect(path);
    await expect(client.call('s', 'Slow', new Uint8Array(0), { timeoutMs: 20 })).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    late.forEach((send) => send());
    expect([...(await client.call('s', 'Fast', Uint8Array.from([7])))]).toEqual([7]);
  });

  it('fails a call with CANCELLED when its signal aborts', async () => {
    const { path } = await startRawServer(() => {});
    const client = await connect(path);
    const controller = new AbortController();
    const call = client.call('s', 'm', new Uint8Array(0), { signal: controller.signal });
    controller.abort();
    await expect(call).rejects.toMatchObject({ code: Code.CANCELLED });
  });

  it('fails pending and later calls with UNAVAILABLE "ttrpc: closed" when the server hangs up', async () => {
    const { path } = await startRawServer((_req, _streamId, _reply, socket) => socket.destroy());
    const client = await connect(path);
    await expect(client.call('s', 'm', new Uint8Array(0))).rejects.toMatchObject({ code: Code.UNAVAILABLE, message: 'ttrpc: closed' });
    expect(client.isClosed).toBe(true);
    await expect(client.call('s', 'm', new Uint8Array(0))).rejects.toMatchObject({ code: Code.UNAVAILABLE, message: 'ttrpc: closed' });
  });

  it('fails to connect with UNAVAILABLE when nothing listens', async () => {
    await expect(TtrpcClient.connect(join(dir, 'nobody.sock'))).rejects.toMatchObject({ code: Code.UNAVAILABLE });
  });

  it('refuses to send a request over the size limit', async () => {
    const { path, requests } = await startRawServer(echo);
    const client = await connect(path, 64);
    await expect(client.call('s', 'm', new Uint8Array(100))).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    await client.call('s', 'm', new Uint8Array(1));
    expect(requests).toHaveLength(1);
  });

  it('fails only the call whose response is over the size limit', async () => {
    const { path } = await startRawServer((req, streamId, reply) =>
      reply(streamId, ok(req.method === 'Big' ? new Uint8Array(500) : req.payload)),
    );
    const client = await connect(path, 128);
    await expect(client.call('s', 'Big', new Uint8Array(0))).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    expect([...(await client.call('s', 'Small', Uint8Array.from([5])))]).toEqual([5]);
    expect(client.isClosed).toBe(false);
  });

  it('forwards an event envelope to an Events service and accepts its empty reply', async () => {
    const { ForwardRequest } = containerd.services.events.ttrpc.v1;
    const received: containerd.services.events.ttrpc.v1.ForwardRequest[] = [];
    const server = new TtrpcServer({ logger: createLogger({ level: 'error', write: () => {} }) });
    server.register('containerd.services.events.ttrpc.v1.Events', {
      Forward: method(ForwardRequest, google.protobuf.Empty, async (req) => (received.push(req), {})),
    });
    const path = join(dir, `c${++socketCount}.sock`);
    await server.listen(path);
    cleanups.push(() => server.close());
    const client = await connect(path);
    const exit = containerd.events.TaskExit.encode({ containerId: 'c1', id: 'c1', pid: 7, exitStatus: 1 }).finish();
    const envelope = { namespace: 'default', topic: '/tasks/exit', event: { typeUrl: 'containerd.events.TaskExit', value: exit } };
    const payload = await client.call('containerd.services.events.ttrpc.v1.Events', 'Forward', ForwardRequest.encode({ envelope }).finish(), {
      timeoutMs: 5000,
    });
    expect(payload.length).toBe(0);
    await vi.waitFor(() => expect(received).toHaveLength(1));
    expect(received[0]!.envelope).toMatchObject({ namespace: 'default', topic: '/tasks/exit' });
    expect(containerd.events.TaskExit.decode(received[0]!.envelope!.event!.value!).pid).toBe(7);
  });
});
