import { PassThrough } from 'node:stream';
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { OutputPipe, type ChunkSink } from '../../agent/src/output-pipe.js';

class FakeSink extends EventEmitter implements ChunkSink {
  chunks: Buffer[] = [];
  ended = false;
  constructor(private readonly acceptBeforeFull: number) {
    super();
  }
  write(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return this.chunks.length < this.acceptBeforeFull;
  }
  end(): void {
    this.ended = true;
  }
}

const tick = () => new Promise((r) => setImmediate(r));

describe('OutputPipe', () => {
  it('holds output until a reader attaches, then delivers all of it and ends', async () => {
    const pipe = new OutputPipe('stdout');
    const source = new PassThrough();
    pipe.setSource(source);
    source.write('a');
    source.end('b');
    await tick();
    let done = false;
    void pipe.done.then(() => (done = true));
    await tick();
    expect(done).toBe(false);
    const sink = new FakeSink(100);
    pipe.attach(sink, () => undefined);
    await pipe.done;
    expect(Buffer.concat(sink.chunks).toString()).toBe('ab');
    expect(sink.ended).toBe(true);
  });

  it('stops reading while the sink is full and goes on at drain, batching what piled up', async () => {
    const pipe = new OutputPipe('stdout');
    const source = new PassThrough();
    const sink = new FakeSink(1);
    pipe.attach(sink, () => undefined);
    pipe.setSource(source);
    source.write('x');
    await tick();
    source.write('y');
    source.write('z');
    await tick();
    expect(sink.chunks.map(String)).toEqual(['x']);
    expect(source.readableLength).toBe(2);
    sink.emit('drain');
    await tick();
    expect(sink.chunks.map(String)).toEqual(['x', 'yz']);
  });

  it('refuses a second reader', () => {
    const pipe = new OutputPipe('stdout of c1');
    pipe.attach(new FakeSink(10), () => undefined);
    expect(() => pipe.attach(new FakeSink(10), () => undefined)).toThrow('stdout of c1 already has a reader');
  });

  it('lets a new reader take over after the first is cancelled', async () => {
    const pipe = new OutputPipe('stdout');
    const source = new PassThrough();
    let cancel!: () => void;
    const first = new FakeSink(10);
    pipe.attach(first, (l) => (cancel = l));
    pipe.setSource(source);
    source.write('1');
    await tick();
    cancel();
    source.write('2');
    const second = new FakeSink(10);
    pipe.attach(second, () => undefined);
    source.end();
    await pipe.done;
    expect(first.chunks.map(String)).toEqual(['1']);
    expect(second.chunks.map(String)).toEqual(['2']);
  });

  it('ends a reader at once when there is no source', async () => {
    const pipe = new OutputPipe('stderr');
    pipe.setNoSource();
    const sink = new FakeSink(10);
    pipe.attach(sink, () => undefined);
    expect(sink.ended).toBe(true);
    await pipe.done;
  });

  it('cuts a source that never ends: the reader gets what came and EOF, and the source is let go', async () => {
    const pipe = new OutputPipe('stdout');
    const source = new PassThrough();
    const sink = new FakeSink(10);
    pipe.attach(sink, () => undefined);
    pipe.setSource(source);
    source.write('before the exit');
    await tick();
    pipe.cut();
    await pipe.done;
    expect(sink.chunks.map(String)).toEqual(['before the exit']);
    expect(sink.ended).toBe(true);
    expect(source.destroyed).toBe(true);
  });
});
