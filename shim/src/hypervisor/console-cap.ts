// Keeps the guest console file, which lives on the host's /run tmpfs, within
// a size bound: a guest that prints without end (OOM kills, segfault traces,
// or on purpose) must not grow host memory without end. QEMU appends
// (append=on), so cutting the file to its newest part leaves QEMU writing at
// the new end. Output QEMU writes while a cut is under way can be lost; the
// newest part is always kept.
import { open, stat } from 'node:fs/promises';

export const MAX_CONSOLE_BYTES = 1024 * 1024;
/** What a cut keeps: the newest half of the bound. */
const KEEP_BYTES = MAX_CONSOLE_BYTES / 2;
const CHECK_MS = 1000;

/** Cuts the file to its newest KEEP_BYTES once it is larger than maxBytes; resolves with whether it did. */
export async function capFile(path: string, maxBytes = MAX_CONSOLE_BYTES, keepBytes = Math.min(KEEP_BYTES, maxBytes)): Promise<boolean> {
  const size = (await stat(path).catch(() => undefined))?.size ?? 0;
  if (size <= maxBytes) return false;
  const file = await open(path, 'r+');
  try {
    const tail = Buffer.alloc(keepBytes);
    const { bytesRead } = await file.read(tail, 0, keepBytes, size - keepBytes);
    await file.truncate(0);
    await file.write(tail.subarray(0, bytesRead), 0, bytesRead, 0);
  } finally {
    await file.close();
  }
  return true;
}

/** Checks the console file every second until stopped. */
export class ConsoleCap {
  readonly #timer: NodeJS.Timeout;
  #checking: Promise<unknown> = Promise.resolve();

  constructor(path: string, onCut: () => void) {
    this.#timer = setInterval(() => {
      this.#checking = this.#checking.then(() => capFile(path)).then((cut) => cut && onCut(), () => undefined);
    }, CHECK_MS);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#checking;
  }
}
