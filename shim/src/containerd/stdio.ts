// Connects a sandbox process to the stdio containerd gave it: FIFOs (or, for
// stdout/stderr, plain files or a logging binary) created by the client.
// Output is copied with back-pressure; `flushed` resolves once every byte was
// written and the client's read ends see EOF (or the logging binary ended),
// which is when an exit may be reported.
import { closeSync, constants, createWriteStream, open as openFd, openSync } from 'node:fs';
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../../../common/log.js';
import type { ProcessHandle } from '../sandbox/process-handle.js';
import { BinaryLogger } from './binary-logger.js';

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

export type StdioTarget = { kind: 'none' } | { kind: 'fifo' | 'file'; path: string } | { kind: 'binary'; uri: URL };

/** A path as containerd passes it: a plain path, fifo://, file:// or binary:// (a logging binary). */
export function stdioTarget(uri: string): StdioTarget {
  if (!uri) return { kind: 'none' };
  if (uri.startsWith('file://')) return { kind: 'file', path: uri.slice('file://'.length) };
  if (uri.startsWith('fifo://')) return { kind: 'fifo', path: uri.slice('fifo://'.length) };
  if (uri.startsWith('binary://')) return { kind: 'binary', uri: new URL(uri) };
  if (uri.includes('://')) throw new Error(`stdio ${uri}: only FIFOs, file:// and binary:// are supported`);
  return { kind: 'fifo', path: uri };
}

/** How often an output FIFO's open is tried again while the client has not opened its read end. */
const FIFO_RETRY_FIRST_MS = 5;
const FIFO_RETRY_MAX_MS = 200;

/** After CloseIO, how long stdin may carry nothing before it is closed although the client's end is still open. */
const CLOSE_IO_IDLE_MS = 1000;

/** An output FIFO whose open waits for the client; cancel() gives up on it. */
export interface PendingOpen {
  cancel(): void;
}

/**
 * Opens an output FIFO for writing the way runc does, once the client has opened its read end
 * (writing earlier could finish and close before the client opens, and a FIFO drops its data when
 * its last fd closes). The open is non-blocking and tried again until the reader is there, so no
 * thread-pool thread waits on a client; the fd is then served by the event loop as a pipe.
 */
function openOutput(uri: string, pending: Set<PendingOpen>): Promise<Writable> | undefined {
  const target = stdioTarget(uri);
  if (target.kind === 'none' || target.kind === 'binary') return undefined;
  if (target.kind === 'file') {
    // A raw fd that the stream owns (a FileHandle's fd would be closed when the handle is collected).
    return new Promise<number>((resolve, reject) =>
      openFd(target.path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))),
    ).then((fd) => createWriteStream('', { fd, autoClose: true }));
  }
  return new Promise<Writable>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let delay = FIFO_RETRY_FIRST_MS;
    const entry: PendingOpen = {
      cancel: () => {
        clearTimeout(timer);
        pending.delete(entry);
        reject(new Error(`${target.path}: the client never opened it`));
      },
    };
    pending.add(entry);
    const attempt = () => {
      openFd(target.path, constants.O_WRONLY | constants.O_NONBLOCK, (err, fd) => {
        if (!pending.has(entry)) {
          if (!err) closeSync(fd); // cancelled meanwhile
          return;
        }
        if (err?.code === 'ENXIO') {
          // No reader yet.
          timer = setTimeout(attempt, delay);
          delay = Math.min(delay * 2, FIFO_RETRY_MAX_MS);
          return;
        }
        pending.delete(entry);
        if (err) return reject(err);
        // Our own read end keeps the FIFO alive if the client detaches (ctr run -d), so output waits
        // for a later `ctr task attach` instead of failing with EPIPE.
        const keepAlive = openSync(target.path, constants.O_RDONLY | constants.O_NONBLOCK);
        const sink = new net.Socket({ fd, readable: false, writable: true });
        sink.once('close', () => closeSync(keepAlive));
        resolve(sink);
      });
    };
    attempt();
  });
}

/** done: when the sink counts as flushed: a FIFO once closed, a logging binary's socket once ended. */
function copyOutput(source: Readable, opening: Promise<Writable> | undefined, log: Logger, done: 'close' | 'finish' = 'close'): Promise<void> {
  return new Promise((resolve) => {
    const drain = () => {
      // Nobody takes this stream: read it anyway so the process never blocks on it.
      source.resume();
      source.once('end', resolve);
      source.once('error', () => resolve());
    };
    if (!opening) return drain();
    opening.then(
      (sink) => {
        source.pipe(sink);
        sink.once(done, () => resolve());
        sink.once('error', (err) => {
          log.warn('cannot write process output', { error: err.message });
          source.unpipe(sink);
          drain();
        });
        source.once('error', () => sink.end());
      },
      (err: Error) => {
        log.warn('cannot open process output', { error: err.message });
        drain();
      },
    );
  });
}

export class ProcessStdio {
  #stdinStream: net.Socket | undefined;
  #stdinIdleWatch: NodeJS.Timeout | undefined;
  /** A chunk of stdin is on its way to the process. */
  #stdinWriting = false;
  #logger: BinaryLogger | undefined;
  #attached = false;
  /** Output FIFOs whose open still waits for the client. */
  readonly #pendingOpens = new Set<PendingOpen>();
  #flushed: Promise<void> = Promise.resolve();

  /** ids: what a logging binary is told (CONTAINER_ID is the exec id for an exec, as with runc). */
  constructor(
    readonly paths: StdioPaths,
    private readonly log: Logger,
    private readonly ids: { id: string; namespace: string },
  ) {}

  /** Checks the URIs and starts a logging binary if stdout names one; before the process exists. */
  async open(): Promise<void> {
    for (const uri of [this.paths.stdin, this.paths.stdout, this.paths.stderr]) stdioTarget(uri);
    const stdout = stdioTarget(this.paths.stdout);
    if (stdout.kind === 'binary') this.#logger = await BinaryLogger.start(stdout.uri, this.ids);
  }

  /** Starts copying between the client's stdio and the process. */
  async attach(proc: ProcessHandle): Promise<void> {
    this.#attached = true;
    const logger = this.#logger;
    if (logger) {
      const copies = [copyOutput(proc.stdout, Promise.resolve(logger.stdout), this.log, 'finish'), copyOutput(proc.stderr, Promise.resolve(logger.stderr), this.log, 'finish')];
      this.#flushed = Promise.all(copies).then(() => logger.stop());
      await proc.closeStdin().catch(() => undefined);
      return;
    }
    const stdout = openOutput(this.paths.stdout, this.#pendingOpens);
    const stderr = this.paths.terminal ? undefined : openOutput(this.paths.stderr, this.#pendingOpens);
    this.#flushed = Promise.all([copyOutput(proc.stdout, stdout, this.log), copyOutput(proc.stderr, stderr, this.log)]).then(() => undefined);
    const stdin = stdioTarget(this.paths.stdin);
    if (stdin.kind === 'none' || stdin.kind === 'binary') {
      // A logging binary takes output only: the process's stdin is closed, as with no stdin at all.
      if (!this.paths.terminal) await proc.closeStdin().catch(() => undefined);
      return;
    }
    // Non-blocking, so no thread-pool thread waits for the client. Until a writer has come, epoll
    // reports nothing on this FIFO (no early EOF); once the last writer is gone, it reports EOF.
    const fd = await new Promise<number>((resolve) =>
      openFd(stdin.path, constants.O_RDONLY | constants.O_NONBLOCK, (err, f) => {
        if (err) this.log.warn('cannot open stdin; the process gets none', { error: err.message });
        resolve(err ? -1 : f);
      }),
    );
    if (fd < 0) {
      await proc.closeStdin().catch(() => undefined);
      return;
    }
    const stream = new net.Socket({ fd, readable: true, writable: false });
    this.#stdinStream = stream;
    stream.once('close', () => clearInterval(this.#stdinIdleWatch));
    void (async () => {
      try {
        for await (const chunk of stream) {
          this.#stdinWriting = true;
          await proc.write(chunk as Buffer);
          this.#stdinWriting = false;
        }
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
    if (!stream) {
      await proc.closeStdin();
      return;
    }
    if (stream.destroyed || stream.readableEnded || this.#stdinIdleWatch) return;
    // A client that never opened its end, or keeps it open after CloseIO, sends nothing more: once
    // nothing has come for a while, stdin is closed without waiting for that EOF.
    let seen = stream.bytesRead;
    this.#stdinIdleWatch = setInterval(() => {
      if (stream.bytesRead !== seen || stream.readableLength > 0 || this.#stdinWriting) {
        seen = stream.bytesRead;
        return;
      }
      clearInterval(this.#stdinIdleWatch);
      stream.destroy();
      proc.closeStdin().catch((err: Error) => this.log.debug('cannot close stdin', { error: err.message }));
    }, CLOSE_IO_IDLE_MS).unref();
  }

  /** Resolves when all output was written and the client's FIFOs were closed. */
  get flushed(): Promise<void> {
    return this.#flushed;
  }

  /** Stops reading stdin, gives up on output FIFOs the client never opened, and stops a logging binary that never got a process. */
  async close(): Promise<void> {
    if (this.#logger && !this.#attached) await this.#logger.stop();
    for (const opening of [...this.#pendingOpens]) opening.cancel();
    clearInterval(this.#stdinIdleWatch);
    this.#stdinStream?.destroy();
  }
}
