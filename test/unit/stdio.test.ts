// Output FIFOs the client has not opened yet must not hold a thread-pool
// thread each: a pod with many such processes froze every file operation.
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { ProcessStdio } from '../../shim/src/containerd/stdio.js';
import type { ProcessHandle } from '../../shim/src/sandbox/process-handle.js';

const dir = mkdtempSync(join(tmpdir(), 'kata-ts-stdio-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const log = createLogger({ level: 'error' });

function fakeProcess() {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  return { stdout, stderr, closeStdin: async () => undefined } as unknown as ProcessHandle & { stdout: PassThrough; stderr: PassThrough };
}

describe('ProcessStdio output FIFOs', () => {
  it('wait for their client without taking the thread pool, then deliver everything, and give up cleanly when closed', async () => {
    const opened: { stdio: ProcessStdio; proc: ReturnType<typeof fakeProcess>; stdout: string }[] = [];
    for (let i = 0; i < 20; i++) {
      const stdout = join(dir, `p${i}-stdout`);
      const stderr = join(dir, `p${i}-stderr`);
      execFileSync('mkfifo', [stdout, stderr]);
      const stdio = new ProcessStdio({ stdin: '', stdout, stderr, terminal: false }, log, { id: `p${i}`, namespace: 'default' });
      await stdio.open();
      const proc = fakeProcess();
      await stdio.attach(proc);
      opened.push({ stdio, proc, stdout });
    }
    // 40 opens wait for readers that are not there; the thread pool (4 threads here) is free.
    const t0 = Date.now();
    await readFile('/proc/self/status');
    expect(Date.now() - t0).toBeLessThan(1000);

    // The client of the first process opens its end: the output written before it reaches it whole.
    const first = opened[0]!;
    first.proc.stdout.write('written before the client came\n');
    const received: Buffer[] = [];
    const reader = createReadStream(first.stdout);
    reader.on('data', (c) => received.push(c as Buffer));
    await new Promise((r) => setTimeout(r, 300));
    first.proc.stdout.end('and after\n');
    first.proc.stderr.end();
    await new Promise<void>((r) => reader.once('end', () => r()));
    expect(Buffer.concat(received).toString()).toBe('written before the client came\nand after\n');

    // The others never get a client: closing gives up at once, and their output is drained.
    for (const o of opened.slice(1)) {
      await o.stdio.close();
      o.proc.stdout.end('nobody reads this');
      o.proc.stderr.end();
      await o.stdio.flushed;
    }
  });
});

/** A process that records what reaches its stdin and when stdin closes. */
function stdinRecorder() {
  const got: Buffer[] = [];
  let closed!: () => void;
  let isClosed = false;
  const stdinClosed = new Promise<void>((r) => (closed = r)).then(() => void (isClosed = true));
  const proc = {
    stdout: new PassThrough(),
    stderr: new PassThrough(),
    write: async (b: Buffer) => void got.push(b),
    closeStdin: async () => closed(),
  } as unknown as ProcessHandle;
  return { proc, got, stdinClosed, isClosed: () => isClosed };
}

describe('ProcessStdio stdin FIFOs', () => {
  it('wait for their client without taking the thread pool, and forward everything until its EOF', async () => {
    const waiting: { stdio: ProcessStdio; stdin: string; rec: ReturnType<typeof stdinRecorder> }[] = [];
    for (let i = 0; i < 10; i++) {
      const stdin = join(dir, `in${i}`);
      execFileSync('mkfifo', [stdin]);
      const stdio = new ProcessStdio({ stdin, stdout: '', stderr: '', terminal: false }, log, { id: `in${i}`, namespace: 'default' });
      const rec = stdinRecorder();
      await stdio.attach(rec.proc);
      waiting.push({ stdio, stdin, rec });
    }
    const t0 = Date.now();
    await readFile('/proc/self/status');
    expect(Date.now() - t0).toBeLessThan(1000);
    // No writer yet is not EOF: stdin stays open.
    await new Promise((r) => setTimeout(r, 200));
    expect(waiting[0]!.rec.isClosed()).toBe(false);

    const first = waiting[0]!;
    execFileSync('sh', ['-c', `printf 'one\\ntwo\\n' > ${first.stdin}`]);
    await first.rec.stdinClosed;
    expect(Buffer.concat(first.rec.got).toString()).toBe('one\ntwo\n');
    for (const w of waiting.slice(1)) await w.stdio.close();
  });

  it('closes stdin after CloseIO once nothing more comes, also when the client never opened its end', async () => {
    const stdin = join(dir, 'in-closeio');
    execFileSync('mkfifo', [stdin]);
    const stdio = new ProcessStdio({ stdin, stdout: '', stderr: '', terminal: false }, log, { id: 'closeio', namespace: 'default' });
    const rec = stdinRecorder();
    await stdio.attach(rec.proc);
    await stdio.closeStdin(rec.proc);
    await rec.stdinClosed;
    expect(rec.got).toEqual([]);
    await stdio.close();
  });
});
