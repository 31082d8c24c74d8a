// The debug console's wire: frames cut however the stream splits them, the
// request header checked field by field, and a whole session between the
// real client and the real shim side over a unix socket, with a scripted
// process in place of the guest's.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { DebugConsoleError, runDebugConsole } from '../../shim/src/debug-console/console-client.js';
import { parseConsoleRequest } from '../../shim/src/debug-console/console-request.js';
import { serveDebugConsole, type DebugConsoleHost } from '../../shim/src/debug-console/console-session.js';
import { encodeFrame, exitFrame, FrameDecoder, FrameType, MAX_PAYLOAD_BYTES, parseExit, parseResize, resizeFrame } from '../../shim/src/debug-console/frames.js';
import { DebugConsoleDisabledError } from '../../shim/src/sandbox/errors.js';
import type { ProcessHandle } from '../../shim/src/sandbox/process-handle.js';

const log = createLogger({ level: 'error', write: () => undefined });

describe('debug console frames', () => {
  it('come out whole however the bytes were split', () => {
    const stream = Buffer.concat([encodeFrame(FrameType.input, Buffer.from('ls\r')), resizeFrame(50, 132), encodeFrame(FrameType.inputEnd), exitFrame(-1)]);
    for (const step of [1, 3, 7, stream.length]) {
      const decoder = new FrameDecoder();
      const frames = [];
      for (let off = 0; off < stream.length; off += step) frames.push(...decoder.push(stream.subarray(off, off + step)));
      expect(frames.map((f) => f.type)).toEqual([FrameType.input, FrameType.resize, FrameType.inputEnd, FrameType.exit]);
      expect(frames[0]!.payload.toString()).toBe('ls\r');
      expect(parseResize(frames[1]!.payload)).toEqual({ rows: 50, columns: 132 });
      expect(parseExit(frames[3]!.payload)).toBe(-1);
      expect(decoder.pendingBytes).toBe(0);
    }
  });

  it('refuse what no peer of ours sends', () => {
    expect(() => new FrameDecoder().push(Buffer.from([0x51, 0, 0, 0, 0]))).toThrow(/unknown frame type 0x51/);
    const huge = Buffer.alloc(5);
    huge[0] = FrameType.output;
    huge.writeUInt32BE(MAX_PAYLOAD_BYTES + 1, 1);
    expect(() => new FrameDecoder().push(huge)).toThrow(/over/);
    expect(() => parseResize(Buffer.alloc(3))).toThrow(/4 bytes/);
  });
});

describe('the debug console request', () => {
  it('defaults to a shell and names a bad field', () => {
    expect(parseConsoleRequest('{}')).toEqual({ command: ['/bin/sh'], env: [], rows: 0, columns: 0 });
    expect(parseConsoleRequest('{"command":["cat","/proc/cmdline"],"env":["TERM=vt100"],"rows":24,"columns":80}')).toMatchObject({ command: ['cat', '/proc/cmdline'] });
    expect(() => parseConsoleRequest(undefined)).toThrow(/no kata-ts-debug-console header/);
    expect(() => parseConsoleRequest('nope')).toThrow(/not JSON/);
    expect(() => parseConsoleRequest('{"command":[]}')).toThrow(/command/);
    expect(() => parseConsoleRequest('{"env":["=x"]}')).toThrow(/NAME=value/);
    expect(() => parseConsoleRequest('{"rows":70000}')).toThrow(/65535/);
  });
});

/** A guest process from a script: what it was sent is recorded. */
function scriptedProcess() {
  const stdout = new PassThrough();
  let finish!: (status: number) => void;
  const exit = new Promise<number>((r) => (finish = r));
  const seen = { input: '', resizes: [] as string[], stdinClosed: false, signals: [] as number[] };
  const process = {
    stdout,
    wait: async () => ({ status: await exit, exitedAt: new Date() }),
    write: async (data: Uint8Array) => void (seen.input += Buffer.from(data).toString()),
    resize: async (rows: number, columns: number) => void seen.resizes.push(`${rows}x${columns}`),
    closeStdin: async () => void (seen.stdinClosed = true),
    signal: async (signal: number) => {
      seen.signals.push(signal);
      stdout.end();
      finish(128 + signal);
    },
  } as unknown as ProcessHandle;
  return { process, stdout, finish, seen };
}

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

describe('a debug console session', () => {
  let dir: string;
  let server: Server;
  let socketPath: string;
  let host: DebugConsoleHost;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kata-ts-console-'));
    socketPath = join(dir, 'monitor.sock');
    server = createServer((_req, res) => res.end());
    server.on('upgrade', (req, socket) => void serveDebugConsole(req, socket, host, log));
    await new Promise<void>((r) => server.listen(socketPath, r));
  });

  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  it('carries output, input, resizes and the end of input, and ends with the exit status after all output', async () => {
    const guest = scriptedProcess();
    let asked: unknown;
    host = {
      id: 'sb',
      startDebugConsole: async (execId, args, env, size) => {
        asked = { execId, args, env, size };
        return { pid: 42, process: guest.process };
      },
    };
    const input = new PassThrough();
    const output = new Collect();
    let resize!: (rows: number, columns: number) => void;
    const session = runDebugConsole(socketPath, { command: ['cat', '/proc/cmdline'], env: ['TERM=xterm'], rows: 24, columns: 80 }, {
      input,
      output,
      onResize: (l) => ((resize = l), () => undefined),
    });
    await expect.poll(() => asked).toMatchObject({ execId: expect.stringMatching(/^debug-/), args: ['cat', '/proc/cmdline'], env: ['TERM=xterm'], size: { rows: 24, columns: 80 } });
    await expect.poll(() => resize).toBeDefined();
    input.write('hello\r');
    resize(40, 100);
    input.end();
    await expect.poll(() => guest.seen).toEqual({ input: 'hello\r', resizes: ['40x100'], stdinClosed: true, signals: [] });
    guest.stdout.write('console=hvc0 ');
    guest.stdout.end('quiet\r\n');
    guest.finish(3);
    expect(await session).toBe(3);
    expect(output.text).toBe('console=hvc0 quiet\r\n');
  });

  it('is refused with the shim’s reason when the console is off', async () => {
    host = {
      id: 'sb',
      startDebugConsole: async () => {
        throw new DebugConsoleDisabledError('sb');
      },
    };
    const session = runDebugConsole(socketPath, { command: ['sh'], env: [], rows: 0, columns: 0 }, { input: new PassThrough(), output: new Collect() });
    await expect(session).rejects.toThrow(DebugConsoleError);
    await expect(session).rejects.toThrow(/debug console is off; set debug_console_enabled = true in the \[agent\] section/);
  });

  it('kills the process when the client goes away first', async () => {
    const guest = scriptedProcess();
    host = { id: 'sb', startDebugConsole: async () => ({ pid: 42, process: guest.process }) };
    const { request } = await import('node:http');
    const req = request({ socketPath, path: '/debug-console', method: 'POST', headers: { connection: 'Upgrade', upgrade: 'kata-ts-debug-console', 'kata-ts-debug-console': '{}' } });
    const socket = await new Promise<import('node:net').Socket>((resolve) => req.on('upgrade', (_res, s) => resolve(s)).end());
    socket.destroy();
    await expect.poll(() => guest.seen.signals).toEqual([9]);
  });

  it('answers a request that is not a console upgrade with an HTTP error', async () => {
    host = { id: 'sb', startDebugConsole: async () => Promise.reject(new Error('not reached')) };
    const { request } = await import('node:http');
    const status = await new Promise<number | undefined>((resolve) =>
      request({ socketPath, path: '/debug-console', method: 'POST', headers: { connection: 'Upgrade', upgrade: 'websocket' } }, (res) => resolve(res.statusCode)).end(),
    );
    expect(status).toBe(400);
  });
});
