// A process running in the sandbox, seen from the host: its output as Node
// streams, stdin, signals, resize, and an exit that is reported only after
// every byte of its output has arrived.
import { PassThrough, type Readable } from 'node:stream';
import type { ClientReadableStream } from '@grpc/grpc-js';
import type { OutputChunk } from '../../../proto/gen/agent.js';
import type { AgentClient } from './agent-client.js';

export interface ProcessExit {
  status: number;
  exitedAt: Date;
}

function pipeOutput(agent: AgentClient, source: ClientReadableStream<OutputChunk>, name: string): { stream: Readable; ended: Promise<void> } {
  const stream = new PassThrough();
  const ended = new Promise<void>((resolve, reject) => {
    // grpc-js ends a failed stream too, right after its error: that end is not a complete output.
    let failed = false;
    source.on('data', (chunk: OutputChunk) => {
      // Back-pressure: stop pulling from the agent while our reader lags.
      if (!stream.write(chunk.data)) {
        source.pause();
        stream.once('drain', () => source.resume());
      }
    });
    source.on('end', () => {
      if (failed) return;
      stream.end();
      resolve();
    });
    source.on('error', (err) => {
      failed = true;
      void agent.explain(name, err).then((e) => {
        // wait() reports the failure; the stream only errors if someone listens for it.
        if (stream.listenerCount('error') > 0) stream.destroy(e);
        else stream.end();
        reject(e);
      });
    });
  });
  ended.catch(() => undefined);
  return { stream, ended };
}

export class ProcessHandle {
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly #outputEnded: Promise<void>;
  #exit: Promise<ProcessExit> | undefined;

  constructor(
    private readonly agent: AgentClient,
    readonly containerId: string,
    readonly execId: string,
  ) {
    const out = pipeOutput(agent, agent.readOutput('readStdout', containerId, execId), 'ReadStdout');
    const err = pipeOutput(agent, agent.readOutput('readStderr', containerId, execId), 'ReadStderr');
    this.stdout = out.stream;
    this.stderr = err.stream;
    this.#outputEnded = Promise.all([out.ended, err.ended]).then(() => undefined);
    // wait() reports a failed stream; until someone waits, the failure must not count as unhandled.
    this.#outputEnded.catch(() => undefined);
  }

  /** Exit status, after all output was received (not necessarily consumed by the reader). */
  wait(): Promise<ProcessExit> {
    this.#exit ??= (async () => {
      const res = await this.agent.call('waitProcess', { containerId: this.containerId, execId: this.execId }, null);
      await this.#outputEnded;
      return { status: res.exitStatus, exitedAt: new Date(res.exitedAtMs) };
    })();
    return this.#exit;
  }

  async write(data: Uint8Array): Promise<void> {
    await this.agent.call('writeStdin', { containerId: this.containerId, execId: this.execId, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength) });
  }

  async closeStdin(): Promise<void> {
    await this.agent.call('closeStdin', { containerId: this.containerId, execId: this.execId });
  }

  /** Streams `source` into stdin in chunks (each write awaited: back-pressure), then closes stdin. */
  async pipeFrom(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, chunkSize = 256 * 1024): Promise<void> {
    for await (const chunk of source) {
      for (let off = 0; off < chunk.length; off += chunkSize) await this.write(chunk.subarray(off, off + chunkSize));
    }
    await this.closeStdin();
  }

  async signal(signal: number, all = false): Promise<void> {
    await this.agent.call('signalProcess', { containerId: this.containerId, execId: this.execId, signal, all });
  }

  async resize(rows: number, columns: number): Promise<void> {
    await this.agent.call('ttyWinResize', { containerId: this.containerId, execId: this.execId, rows, columns });
  }
}
