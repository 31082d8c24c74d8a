// One output stream of a process (stdout, stderr or the terminal), handed to
// at most one reader at a time with back-pressure: while nobody reads or the
// reader's buffer is full, the source stays paused and the process blocks on
// write, so no output is dropped or buffered without bound.
import type { Readable } from 'node:stream';
import { failedPrecondition } from './errors.js';

export interface ChunkSink {
  /** Returns false when the sink's buffer is full; 'drain' follows. */
  write(chunk: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
  end(): void;
}

export class OutputPipe {
  #source: Readable | undefined;
  #ended = false;
  #reader: ChunkSink | undefined;
  #detachReader: (() => void) | undefined;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(readonly name: string) {
    this.#done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  /** Resolves once the source reached EOF and everything was handed to a reader. */
  get done(): Promise<void> {
    return this.#done;
  }

  /** Sets the stream to read from; before this, readers wait. */
  setSource(source: Readable): void {
    this.#source = source;
    source.pause();
    // When a child exits, Node resumes its unread stdio streams, dropping what is buffered, unless a
    // 'readable' listener is attached; a fast process can exit before the host starts reading.
    source.on('readable', () => undefined);
    const finish = () => this.#finish();
    source.once('end', finish);
    source.once('close', finish);
    // A pty master reports EIO once the last slave closes: that is its EOF.
    source.on('error', finish);
    if (this.#reader) this.#pump();
  }

  /** There will be no source (for example stderr of a terminal process). */
  setNoSource(): void {
    this.#finish();
  }

  /** Streams the output into `sink` until EOF or until `cancelled` fires. */
  attach(sink: ChunkSink, onCancelled: (listener: () => void) => void): void {
    if (this.#reader) throw failedPrecondition(`${this.name} already has a reader`);
    if (this.#ended) {
      sink.end();
      return;
    }
    this.#reader = sink;
    onCancelled(() => {
      if (this.#reader !== sink) return;
      this.#detachReader?.();
      this.#reader = undefined;
      this.#source?.pause();
    });
    if (this.#source) this.#pump();
  }

  #pump(): void {
    const source = this.#source!;
    const sink = this.#reader!;
    let blocked = false;
    // Paused mode: read() hands over everything buffered as one chunk, so while the agent is
    // busy (slow under TCG) output is batched into fewer, larger messages.
    const onReadable = () => {
      if (blocked) return;
      let chunk: Buffer | null;
      while ((chunk = source.read() as Buffer | null) !== null) {
        if (!sink.write(chunk)) {
          blocked = true;
          sink.once('drain', () => {
            blocked = false;
            if (this.#reader === sink) onReadable();
          });
          return;
        }
      }
    };
    source.on('readable', onReadable);
    this.#detachReader = () => source.off('readable', onReadable);
    onReadable();
  }

  /** Ends the stream where it is: the reader gets EOF, and the source is let go. */
  cut(): void {
    if (this.#ended) return;
    this.#source?.destroy();
    this.#finish();
  }

  #finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#detachReader?.();
    const reader = this.#reader;
    this.#reader = undefined;
    reader?.end();
    this.#resolveDone();
  }
}
