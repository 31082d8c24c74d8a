import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../common/log.js';
import { containerd } from '../../proto/gen/containerd/containerd.js';
import { decodeResponse, encodeRequest, type ResponseEnvelope } from '../../shim/src/ttrpc/envelope.js';
import { Code, encodeFrame, FrameDecoder, FrameType, method, TtrpcClient, TtrpcError, TtrpcServer, type CallContext, type Frame } from '../../shim/src/ttrpc/index.js';

const { StateRequest, StateResponse, WaitRequest, WaitResponse } = containerd.task.v2;
const TASK = 'containerd.task.v2.Task';
const dir = mkdtempSync(join(tmpdir(), 'kata-ts-ttrpc-'));
let socketCount = 0;
const cleanups: (() => unknown)[] = [];

afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function untilAborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }));
}

/** A server with a Task service whose Wait blocks until the test releases it. */
async function startServer() {
  const lines: string[] = [];
  const server = new TtrpcServer({ logger: createLogger({ level: 'debug', write: (line) => lines.push(line) }) });
  const waitRelease = deferred<number>();
  const contexts: CallContext[] = [];
  server.register(TASK, {
    State: method(StateRequest, StateResponse, async (req, ctx) => {
      contexts.push(ctx);
      if (req.id === 'missing') throw new TtrpcError(Code.NOT_FOUND, 'container missing: not found');
      if (req.id === 'bug') throw new Error('something broke');
      return { id: req.id, pid: 42 };
    }),
    Wait: method(WaitRequest, WaitResponse, async (_req, ctx) => {
      contexts.push(ctx);
      if (_req.id === 'until-aborted') throw await untilAborted(ctx.signal);
      return { exitStatus: await waitRelease.promise };
    }),
  });
  const path = join(dir, `s${++socketCount}.sock`);
  await server.listen(path);
  cleanups.push(() => server.close());
  return { server, path, lines, waitRelease, contexts };
}

async function connectClient(path: string): Promise<TtrpcClient> {
  const client = await TtrpcClient.connect(path);
  cleanups.push(() => client.close());
  return client;
}

/** A hand-driven peer that writes raw bytes and reads decoded frames. */
async function connectRaw(path: string) {
  const socket = net.createConnection(path);
  await new Promise((resolve) => socket.once('connect', resolve));
  cleanups.push(() => socket.destroy());
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let notify = () => {};
  socket.on('data', (chunk: Buffer) => {
    for (const item of decoder.feed(chunk)) if (!(item instanceof Error)) frames.push(item);
    notify();
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    closed,
    write: (bytes: Uint8Array) => socket.write(bytes),
    request(streamId: number, service: string, name: string, payload: Uint8Array, timeoutNano = 0) {
      const data = encodeRequest({ service, method: name, payload, timeoutNano });
      socket.write(encodeFrame({ streamId, type: FrameType.Request, flags: 0, data }));
    },
    async next(): Promise<{ streamId: number } & ResponseEnvelope> {
      while (frames.length === 0) await new Promise<void>((resolve) => (notify = resolve));
      const frame = frames.shift()!;
      return { streamId: frame.streamId, ...decodeResponse(frame.data) };
    },
  };
}

const stateBytes = (id: string) => StateRequest.encode({ id }).finish();
const waitBytes = (id: string) => WaitRequest.encode({ id }).finish();

describe('TtrpcServer', () => {
  it('answers a typed call from the client and passes metadata, deadline and connection id to the handler', async () => {
    const { path, contexts } = await startServer();
    const client = await connectClient(path);
    const before = Date.now();
    const res = await client.callMessage(TASK, 'State', StateRequest, { id: 'c1' }, StateResponse, {
      timeoutMs: 5000,
      metadata: { 'containerd-namespace-ttrpc': 'k8s.io', multi: ['a', 'b'] },
    });
    expect(res).toMatchObject({ id: 'c1', pid: 42 });
    const ctx = contexts[0]!;
    expect(ctx.metadata.get('containerd-namespace-ttrpc')).toEqual(['k8s.io']);
    expect(ctx.metadata.get('multi')).toEqual(['a', 'b']);
    expect(ctx.deadlineMs).toBeGreaterThanOrEqual(before + 4900);
    expect(ctx.deadlineMs).toBeLessThanOrEqual(Date.now() + 5000);
    expect(ctx).toMatchObject({ service: TASK, method: 'State', connectionId: 1 });
    expect(ctx.signal.aborted).toBe(false);
  });

  it('answers a quick call while a slow one on the same connection is still running', async () => {
    const { path, waitRelease } = await startServer();
    const client = await connectClient(path);
    const wait = client.callMessage(TASK, 'Wait', WaitRequest, { id: 'c1' }, WaitResponse);
    const state = await client.callMessage(TASK, 'State', StateRequest, { id: 'c1' }, StateResponse);
    expect(state.pid).toBe(42);
    waitRelease.resolve(137);
    expect((await wait).exitStatus).toBe(137);
  });

  it('writes responses in completion order, not request order', async () => {
    const { path, waitRelease } = await startServer();
    const raw = await connectRaw(path);
    raw.request(1, TASK, 'Wait', waitBytes('c1'));
    raw.request(3, TASK, 'State', stateBytes('c1'));
    expect(await raw.next()).toMatchObject({ streamId: 3, status: { code: Code.OK } });
    waitRelease.resolve(0);
    const wait = await raw.next();
    expect(wait).toMatchObject({ streamId: 1, status: { code: Code.OK } });
    expect(WaitResponse.decode(wait.payload).exitStatus).toBe(0);
  });

  it('serves two connections at once, each with its own id', async () => {
    const { server, path, contexts, waitRelease } = await startServer();
    const [a, b] = [await connectClient(path), await connectClient(path)];
    const waitA = a.callMessage(TASK, 'Wait', WaitRequest, { id: 'a' }, WaitResponse);
    await b.callMessage(TASK, 'State', StateRequest, { id: 'b' }, StateResponse);
    expect(server.connectionCount).toBe(2);
    expect(new Set(contexts.map((c) => c.connectionId)).size).toBe(2);
    waitRelease.resolve(3);
    expect((await waitA).exitStatus).toBe(3);
  });

  it('rejects an even stream id and keeps the connection', async () => {
    const { path } = await startServer();
    const raw = await connectRaw(path);
    raw.request(2, TASK, 'State', stateBytes('c1'));
    expect(await raw.next()).toMatchObject({
      streamId: 2,
      status: { code: Code.INVALID_ARGUMENT, message: 'StreamID must be odd for client initiated streams' },
    });
    raw.request(5, TASK, 'State', stateBytes('c1'));
    expect(await raw.next()).toMatchObject({ streamId: 5, status: { code: Code.OK } });
  });

  it('rejects a stream id that is still in flight', async () => {
    const { path, waitRelease } = await startServer();
    const raw = await connectRaw(path);
    raw.request(1, TASK, 'Wait', waitBytes('c1'));
    raw.request(1, TASK, 'State', stateBytes('c1'));
    expect(await raw.next()).toMatchObject({ streamId: 1, status: { code: Code.INVALID_ARGUMENT } });
    waitRelease.resolve(0);
    expect(await raw.next()).toMatchObject({ streamId: 1, status: { code: Code.OK } });
  });

  it('answers UNIMPLEMENTED for an unknown service or method', async () => {
    const { path } = await startServer();
    const client = await connectClient(path);
    const empty = new Uint8Array(0);
    await expect(client.call('containerd.task.v3.Task', 'State', empty)).rejects.toMatchObject({
      code: Code.UNIMPLEMENTED,
      message: 'service containerd.task.v3.Task',
    });
    await expect(client.call(TASK, 'Pids', empty)).rejects.toMatchObject({ code: Code.UNIMPLEMENTED, message: 'method Pids' });
    await expect(client.call(TASK, 'toString', empty)).rejects.toMatchObject({ code: Code.UNIMPLEMENTED, message: 'method toString' });
  });

  it('carries a handler error code and message, and maps other errors to UNKNOWN', async () => {
    const { path, lines } = await startServer();
    const client = await connectClient(path);
    const call = (id: string) => client.callMessage(TASK, 'State', StateRequest, { id }, StateResponse);
    await expect(call('missing')).rejects.toMatchObject({ code: Code.NOT_FOUND, message: 'container missing: not found' });
    await expect(call('bug')).rejects.toMatchObject({ code: Code.UNKNOWN, message: 'something broke' });
    expect(lines.some((l) => l.includes('level=warn') && l.includes('something broke'))).toBe(true);
  });

  it('answers INTERNAL for a payload that does not decode and INVALID_ARGUMENT for a malformed envelope', async () => {
    const { path } = await startServer();
    const raw = await connectRaw(path);
    raw.request(1, TASK, 'State', Uint8Array.from([0xff, 0xff]));
    expect(await raw.next()).toMatchObject({ streamId: 1, status: { code: Code.INTERNAL } });
    raw.write(encodeFrame({ streamId: 3, type: FrameType.Request, flags: 0, data: Uint8Array.from([0xff, 0xff, 0xff]) }));
    expect(await raw.next()).toMatchObject({ streamId: 3, status: { code: Code.INVALID_ARGUMENT } });
    raw.request(5, TASK, 'State', stateBytes('still-open'));
    expect(await raw.next()).toMatchObject({ streamId: 5, status: { code: Code.OK } });
  });

  it('ignores frames that are not requests', async () => {
    const { path } = await startServer();
    const raw = await connectRaw(path);
    const junk = new Uint8Array([1, 2, 3]);
    for (const [streamId, type] of [[1, FrameType.Response], [3, FrameType.Data], [5, 7]] as const) {
      raw.write(encodeFrame({ streamId, type, flags: 0, data: junk }));
    }
    raw.request(7, TASK, 'State', stateBytes('c1'));
    expect(await raw.next()).toMatchObject({ streamId: 7, status: { code: Code.OK } });
  });

  it('answers an oversized frame with RESOURCE_EXHAUSTED, closes only that connection and logs an error', async () => {
    const { server, path, lines } = await startServer();
    const other = await connectClient(path);
    const raw = await connectRaw(path);
    const header = new Uint8Array(10);
    new DataView(header.buffer).setUint32(0, (4 << 20) + 1);
    new DataView(header.buffer).setUint32(4, 5);
    header[8] = FrameType.Request;
    const sentAt = Date.now();
    raw.write(header);
    const answer = await raw.next();
    expect(answer).toMatchObject({ streamId: 5, status: { code: Code.RESOURCE_EXHAUSTED } });
    expect(answer.status.message).toContain(String((4 << 20) + 1));
    await raw.closed;
    expect(Date.now() - sentAt).toBeLessThan(500); // closed once the answer is out, not by the fallback timer
    expect(lines.some((l) => l.includes('level=error') && l.includes('oversized') && l.includes('stream_id=5'))).toBe(true);
    expect((await other.callMessage(TASK, 'State', StateRequest, { id: 'c1' }, StateResponse)).pid).toBe(42);
    await vi.waitFor(() => expect(server.connectionCount).toBe(1));
  });

  it('still gets the RESOURCE_EXHAUSTED answer to a peer that is writing a whole oversized body', async () => {
    const { path } = await startServer();
    const raw = await connectRaw(path);
    const body = new Uint8Array((4 << 20) + 100);
    raw.write(encodeFrame({ streamId: 7, type: FrameType.Request, flags: 0, data: body }, Infinity));
    expect(await raw.next()).toMatchObject({ streamId: 7, status: { code: Code.RESOURCE_EXHAUSTED } });
    await raw.closed;
  });

  it('stops reading requests from a peer that leaves its answers unread, and answers them all once it reads', async () => {
    const { path } = await startServer();
    const socket = net.createConnection(path);
    await new Promise((resolve) => socket.once('connect', resolve));
    cleanups.push(() => socket.destroy());
    socket.pause();
    // Each unknown 1 MiB method name comes back in its UNIMPLEMENTED answer.
    const data = encodeRequest({ service: TASK, method: 'x'.repeat(1 << 20), payload: new Uint8Array(0), timeoutNano: 0 });
    const count = 24;
    let flushed = 0;
    for (let i = 0; i < count; i++) socket.write(encodeFrame({ streamId: 2 * i + 1, type: FrameType.Request, flags: 0, data }), () => flushed++);
    for (let seen = -1; seen !== flushed && flushed < count; ) {
      seen = flushed;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    // Reading on would hold every answer in memory: the server waits for the peer instead.
    expect(flushed).toBeLessThan(count / 2);
    const decoder = new FrameDecoder();
    const codes: number[] = [];
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.feed(chunk)) if (!(frame instanceof Error)) codes.push(decodeResponse(frame.data).status.code);
    });
    socket.resume();
    await vi.waitFor(() => expect(codes).toHaveLength(count), { timeout: 4000 });
    expect(new Set(codes)).toEqual(new Set([Code.UNIMPLEMENTED]));
  });

  it('closes a connection that sends garbage while others keep working', async () => {
    const { path, lines } = await startServer();
    const other = await connectClient(path);
    const raw = await connectRaw(path);
    raw.write(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: shim\r\n\r\n'));
    await raw.closed;
    expect(lines.some((l) => l.includes('level=error'))).toBe(true);
    expect((await other.callMessage(TASK, 'State', StateRequest, { id: 'c1' }, StateResponse)).pid).toBe(42);
    const fresh = await connectClient(path);
    expect((await fresh.callMessage(TASK, 'State', StateRequest, { id: 'c2' }, StateResponse)).id).toBe('c2');
  });

  it('aborts the handler signal at the deadline the client sent', async () => {
    const { path, contexts } = await startServer();
    const raw = await connectRaw(path);
    const started = Date.now();
    raw.request(1, TASK, 'Wait', waitBytes('until-aborted'), 30e6);
    const answer = await raw.next();
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(answer).toMatchObject({ streamId: 1, status: { code: Code.DEADLINE_EXCEEDED } });
    expect(contexts[0]!.signal.reason).toBeInstanceOf(TtrpcError);
  });

  it('treats a deadline too far out for a timer as no deadline', async () => {
    const { path, contexts, waitRelease } = await startServer();
    const raw = await connectRaw(path);
    raw.request(1, TASK, 'Wait', waitBytes('c1'), 2 ** 62);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(contexts[0]!.signal.aborted).toBe(false);
    waitRelease.resolve(0);
    expect(await raw.next()).toMatchObject({ streamId: 1, status: { code: Code.OK } });
  });

  it('aborts in-flight handlers with CANCELLED when their connection closes', async () => {
    const { server, path, contexts, lines } = await startServer();
    const client = await connectClient(path);
    const wait = client.callMessage(TASK, 'Wait', WaitRequest, { id: 'until-aborted' }, WaitResponse);
    await vi.waitFor(() => expect(contexts).toHaveLength(1));
    client.close();
    await expect(wait).rejects.toMatchObject({ code: Code.UNAVAILABLE, message: 'ttrpc: closed' });
    expect(await untilAborted(contexts[0]!.signal)).toMatchObject({ code: Code.CANCELLED });
    await vi.waitFor(() => expect(server.connectionCount).toBe(0));
    expect(lines.filter((l) => l.includes('level=error'))).toEqual([]);
  });

  it('lets in-flight calls finish within the grace period on close, then refuses new connections', async () => {
    const { server, path, waitRelease } = await startServer();
    const client = await connectClient(path);
    const wait = client.callMessage(TASK, 'Wait', WaitRequest, { id: 'c1' }, WaitResponse);
    await client.callMessage(TASK, 'State', StateRequest, { id: 'c1' }, StateResponse); // Wait is now running
    setTimeout(() => waitRelease.resolve(9), 20);
    await server.close({ graceMs: 2000 });
    expect((await wait).exitStatus).toBe(9);
    await expect(TtrpcClient.connect(path)).rejects.toMatchObject({ code: Code.UNAVAILABLE });
  });

  it('cuts in-flight calls on close without a grace period', async () => {
    const { server, path } = await startServer();
    const client = await connectClient(path);
    const wait = client.callMessage(TASK, 'Wait', WaitRequest, { id: 'c1' }, WaitResponse);
    await client.callMessage(TASK, 'State', StateRequest, { id: 'c1' }, StateResponse);
    await server.close();
    await expect(wait).rejects.toMatchObject({ code: Code.UNAVAILABLE });
  });

  it('refuses to register a service twice', async () => {
    const { server } = await startServer();
    expect(() => server.register(TASK, {})).toThrow(/already registered/);
  });
});
