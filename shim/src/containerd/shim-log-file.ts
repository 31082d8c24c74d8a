// A copy of the shim's log in its sandbox's VM folder (shim.log), beside the
// guest console log, for `kata-ts logs`. The folder exists only once the
// sandbox boots: the lines before are kept and written first. It goes with
// the folder when the VM does.
import { createWriteStream, type WriteStream } from 'node:fs';

/** Lines kept until the file opens; a boot logs a few dozen. */
const EARLY_LINES = 1000;
export const SHIM_LOG_FILE = 'shim.log';

export class ShimLogFile {
  readonly #early: string[] = [];
  #file: WriteStream | undefined;

  write(line: string): void {
    if (this.#file) {
      this.#file.write(`${line}\n`);
      return;
    }
    this.#early.push(line);
    if (this.#early.length > EARLY_LINES) this.#early.shift();
  }

  /** Starts the file; a folder that is already gone means nothing is kept. */
  open(path: string): void {
    if (this.#file) return;
    const file = createWriteStream(path, { flags: 'a', mode: 0o600 });
    file.on('error', () => {
      this.#file = undefined;
    });
    this.#file = file;
    for (const line of this.#early.splice(0)) file.write(`${line}\n`);
  }
}
