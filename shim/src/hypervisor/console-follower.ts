// Follows the guest console file QEMU appends to and hands on each complete
// line as it arrives, so a boot that hangs shows in the log how far it got.
// Polling: the file only grows, and a read every quarter second costs nothing.
import { open, type FileHandle } from 'node:fs/promises';

const POLL_MS = 250;
const CHUNK = 64 * 1024;

export class ConsoleFollower {
  #offset = 0;
  #partial = '';
  #timer: NodeJS.Timeout | undefined;
  #reading: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string,
    private readonly onLine: (line: string) => void,
  ) {}

  start(): void {
    this.#timer = setInterval(() => this.#poll(), POLL_MS);
    this.#timer.unref();
  }

  /** Reads what is left, hands on a last unterminated line, and stops. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#poll();
    await this.#reading;
    if (this.#partial.trim()) this.onLine(this.#partial);
    this.#partial = '';
  }

  #poll(): void {
    // One read at a time, in order.
    this.#reading = this.#reading.then(() => this.#readNew());
  }

  async #readNew(): Promise<void> {
    let file: FileHandle;
    try {
      file = await open(this.path, 'r');
    } catch {
      return; // QEMU has not created it yet
    }
    try {
      // Cut to its newest part (console-cap.ts): read on from its new start.
      if ((await file.stat()).size < this.#offset) this.#offset = 0;
      const buffer = Buffer.alloc(CHUNK);
      for (;;) {
        const { bytesRead } = await file.read(buffer, 0, CHUNK, this.#offset);
        if (bytesRead === 0) break;
        this.#offset += bytesRead;
        this.#emit(buffer.subarray(0, bytesRead).toString('utf8'));
      }
    } finally {
      await file.close();
    }
  }

  #emit(text: string): void {
    const lines = (this.#partial + text).split(/\r?\n/);
    this.#partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) this.onLine(line);
  }
}
