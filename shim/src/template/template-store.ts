// Sandbox templates on disk, one folder per key under the template path:
//   <key>/ram            the guest's RAM as the template left it (sparse)
//   <key>/state          QEMU's saved device state (the RAM and the rootfs image are not in it)
//   <key>/template.json  its inputs, sizes and the state's sha256
// A template is made in a folder of its own and renamed into place when it
// is complete, so a crash leaves no half-written template; a lock file keeps
// two processes from making the same one.
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import { isProcessAlive } from '../../../common/process-alive.js';
import { fileIdentity, type TemplateInputs } from './template-key.js';

export const TEMPLATE_RECORD = 'template.json';

export interface TemplateRecord {
  key: string;
  inputs: TemplateInputs;
  createdAt: string;
  stateBytes: number;
  stateSha256: string;
  ramBytes: number;
  /** From the template VM's spawn to its agent listening, and the save. */
  bootMs: number;
  saveMs: number;
}

export interface Template {
  key: string;
  dir: string;
  ramPath: string;
  statePath: string;
  record: TemplateRecord;
}

export class TemplateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TemplateError';
  }
}

const pathsOf = (dir: string) => ({ ramPath: join(dir, 'ram'), statePath: join(dir, 'state'), recordPath: join(dir, TEMPLATE_RECORD) });

export async function sha256Of(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

export class TemplateStore {
  constructor(
    readonly root: string,
    private readonly log: Logger,
  ) {}

  dirOf(key: string): string {
    return join(this.root, key);
  }

  /** The template of this key when it is there and whole; a broken one is removed (and says why). */
  async find(key: string): Promise<Template | undefined> {
    const dir = this.dirOf(key);
    const { ramPath, statePath, recordPath } = pathsOf(dir);
    const text = await readFile(recordPath, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
    if (text === undefined) return undefined;
    try {
      const record = JSON.parse(text) as TemplateRecord;
      if (record.key !== key) throw new TemplateError(`its record names key ${record.key}`);
      const state = await stat(statePath);
      if (state.size !== record.stateBytes) throw new TemplateError(`its state is ${state.size} bytes, not ${record.stateBytes}`);
      if ((await sha256Of(statePath)) !== record.stateSha256) throw new TemplateError('its state does not match its sha256');
      const ram = await stat(ramPath);
      if (ram.size !== record.ramBytes) throw new TemplateError(`its RAM file is ${ram.size} bytes, not ${record.ramBytes}`);
      return { key, dir, ramPath, statePath, record };
    } catch (err) {
      await this.discard(key, (err as Error).message);
      return undefined;
    }
  }

  /** Removes a template that failed (a restore from it failed, it is damaged); the next use makes it again. */
  async discard(key: string, reason: string): Promise<void> {
    this.log.warn('sandbox template discarded; the next sandbox makes it again', { key, reason });
    await rm(this.dirOf(key), { recursive: true, force: true });
  }

  /**
   * Makes the template of `key` with `make`, which fills the folder it is given; the folder
   * becomes the template once `make` returns and the record is written. undefined when another
   * process is making it now.
   */
  async make(key: string, inputs: TemplateInputs, make: (dir: string) => Promise<{ bootMs: number; saveMs: number }>): Promise<Template | undefined> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const lockPath = join(this.root, `${key}.lock`);
    if (!(await this.#lock(lockPath))) return undefined;
    const building = join(this.root, `.${key}.${process.pid}.partial`);
    try {
      // Made meanwhile by the process that held the lock before us.
      const made = await this.find(key);
      if (made) return made;
      await rm(building, { recursive: true, force: true });
      await mkdir(building, { mode: 0o700 });
      const { bootMs, saveMs } = await make(building);
      const { ramPath, statePath, recordPath } = pathsOf(building);
      const record: TemplateRecord = {
        key,
        inputs,
        createdAt: new Date().toISOString(),
        stateBytes: (await stat(statePath)).size,
        stateSha256: await sha256Of(statePath),
        ramBytes: (await stat(ramPath)).size,
        bootMs,
        saveMs,
      };
      await writeFile(recordPath, `${JSON.stringify(record, null, 2)}\n`);
      for (const path of [ramPath, statePath, recordPath]) await syncFile(path);
      await rm(this.dirOf(key), { recursive: true, force: true });
      await rename(building, this.dirOf(key));
      this.log.info('sandbox template made', { key, bootMs, saveMs, stateBytes: record.stateBytes });
      return { key, dir: this.dirOf(key), ramPath: join(this.dirOf(key), 'ram'), statePath: join(this.dirOf(key), 'state'), record };
    } finally {
      await rm(building, { recursive: true, force: true });
      await unlink(lockPath).catch(() => undefined);
    }
  }

  /** Takes the lock file; one left by a process that died is taken over. */
  async #lock(lockPath: string): Promise<boolean> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const file = await open(lockPath, 'wx', 0o600);
        await file.writeFile(String(process.pid));
        await file.close();
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10);
        if (isProcessAlive(holder)) {
          this.log.info('sandbox template being made by another process', { lock: lockPath, pid: holder });
          return false;
        }
        await unlink(lockPath).catch(() => undefined);
      }
    }
    return false;
  }

  /**
   * Removes templates whose inputs changed (a new kernel, image or QEMU: they can never be used
   * again) and folders left half-made by a process that died.
   */
  async prune(): Promise<void> {
    for (const entry of await readdir(this.root).catch(() => [] as string[])) {
      const partial = /^\.[0-9a-f]+\.(\d+)\.partial$/.exec(entry);
      if (partial) {
        if (!isProcessAlive(Number(partial[1]))) await rm(join(this.root, entry), { recursive: true, force: true });
        continue;
      }
      if (!/^[0-9a-f]{16}$/.test(entry)) continue;
      const record = await readFile(join(this.root, entry, TEMPLATE_RECORD), 'utf8')
        .then((t) => JSON.parse(t) as TemplateRecord)
        .catch(() => undefined);
      if (!record) continue;
      const stale = await staleInput(record.inputs);
      if (stale) {
        this.log.info('stale sandbox template removed', { key: entry, changed: stale });
        await rm(join(this.root, entry), { recursive: true, force: true });
      }
    }
  }
}

/** The first input file that is gone or changed since the template was made. */
async function staleInput(inputs: TemplateInputs): Promise<string | undefined> {
  for (const [role, was] of Object.entries(inputs.files ?? {})) {
    const now = await fileIdentity(was.path).catch(() => undefined);
    if (!now || now.size !== was.size || now.mtimeMs !== was.mtimeMs || now.ino !== was.ino) return `${role} ${was.path}`;
  }
  return undefined;
}

async function syncFile(path: string): Promise<void> {
  const file = await open(path, 'r+');
  try {
    await file.datasync();
  } finally {
    await file.close();
  }
}
