// Connects a sandbox process to the stdio containerd gave it: FIFOs (or, for
// stdout/stderr, plain files) created by the client. Output is copied with
// back-pressure; `flushed` resolves once every byte was written and the
// client's read ends see EOF, which is when an exit may be reported.
import { constants, createReadStream, createWriteStream, type ReadStream, type WriteStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Logger } from '../../../common/log.js';
import type { ProcessHandle } from '../sandbox/process-handle.js';

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** A path as containerd passes it: a plain path, fifo://, or file:// (binary:// log drivers are not supported). */
export function stdioTarget(uri: string): { kind: 'none' } | { kind: 'fifo' | 'file'; path: string } {
  if (!uri) return { kind: 'none' };
  if (uri.startsWith('file://')) return { kind: 'file', path: uri.slice('file://'.length) };
  if (uri.startsWith('fifo://')) return { kind: 'fifo', path: uri.slice('fifo://'.length) };
  if (uri.includes('://')) throw new Error(`stdio ${uri}: only FIFOs and file:// are supported`);
  return { kind: 'fifo', path: uri };
}

async function openOutput(uri: string): Promise<WriteStream | undefined> {
  const target = stdioTarget(uri);
  if (target.kind === 'none') return undefined;
  const isFifo = target.kind === 'fifo' && (await stat(target.path)).isFIFO();
  // O_RDWR on a FIFO never blocks in open() and never fails with EPIPE if the reader goes away.
  const flags = isFifo ? constants.O_RDWR : constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT;
  const handle = await open(target.path, flags, 0o600);
  return createWriteStream('', { fd: handle.fd, autoClose: true });
}

function copyOutput(source: Readable, sink: WriteStream | undefined, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    if (!sink) {
      source.resume(); // drain: nobody asked for this stream
      source.once('end', resolve);
      source.once('error', () => resolve());
      return;
    }
    source.pipe(sink);
    sink.once('close', () => resolve());
    sink.once('error', (err) => {
      log.warn('cannot write process output', { error: err.message });
      resolve();
    });
    source.once('error', () => sink.end());
  });
}

export class ProcessStdio {
  #stdinStream: ReadStream | undefined;
  #flushed: Promise<void> = Promise.resolve();

  constructor(
    readonly paths: StdioPaths,
    private readonly log: Logger,
  ) {}

  /** Starts copying between the client's stdio and the process. */
  async attach(proc: ProcessHandle): Promise<void> {
    const [stdout, stderr] = await Promise.all([openOutput(this.paths.stdout), this.paths.terminal ? undefined : openOutput(this.paths.stderr)]);
    this.#flushed = Promise.all([copyOutput(proc.stdout, stdout, this.log), copyOutput(proc.stderr, stderr, this.log)]).then(() => undefined);
    const stdin = stdioTarget(this.paths.stdin);
    if (stdin.kind === 'none') {
      if (!this.paths.terminal) await proc.closeStdin().catch(() => undefined);
      return;
    }
    // A blocking open in the thread pool: it returns when the client opens its end.
    const stream = createReadStream(stdin.path, { highWaterMark: 256 * 1024 });
    this.#stdinStream = stream;
    void (async () => {
      try {
        for await (const chunk of stream) await proc.write(chunk as Buffer);
        // The client closed its end: the process sees EOF, as with runc.
        await proc.closeStdin();
      } catch (err) {
        this.log.debug('stdin copy ended', { error: (err as Error).message });
      }
    })();
  }

  /**
   * CloseIO: the process's stdin closes once everything the client sent was
   * forwarded. ctr sends CloseIO before it closes its end of the FIFO and
   * waits for the answer, so this must not wait for the copy: the copy itself
   * closes stdin when it reaches the FIFO's EOF.
   */
  async closeStdin(proc: ProcessHandle): Promise<void> {
    const stream = this.#stdinStream;
    if (stream && !stream.destroyed && !stream.pending) return;
    if (!stream) {
      await proc.closeStdin();
      return;
    }
    // Never opened: the client's writer is gone, so no data can come.
    void this.close()
      .then(() => proc.closeStdin())
      .catch((err: Error) => this.log.debug('cannot close stdin', { error: err.message }));
  }

  /** Resolves when all output was written and the client's FIFOs were closed. */
  get flushed(): Promise<void> {
    return this.#flushed;
  }

  /** Stops reading stdin (the process is gone). */
  async close(): Promise<void> {
    const stream = this.#stdinStream;
    if (!stream) return;
    const target = stdioTarget(this.paths.stdin);
    if (stream.pending && target.kind === 'fifo') {
      // The open is still blocked in the thread pool waiting for a writer: be that writer for a moment.
      const unblock = await open(target.path, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
      await unblock?.close();
    }
    stream.destroy();
  }
}
