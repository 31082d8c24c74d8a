// A guest image and the build record beside it (<image>.key, written by
// images/kernel/build.sh and images/rootfs/build.sh): the key of the inputs it
// was built from, its sha256 and, for the rootfs, each input's digest and the
// guest's crun and node versions. What check and env read of an image.
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { isAbsolute, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const KEY_TIMEOUT_MS = 10_000;

export class ImageRecordError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = 'ImageRecordError';
  }
}

export interface ImageRecord {
  key: string;
  sha256: string;
  /** Every `name=value` line but the inputs (key, sha256, linux_source, crun, node…). */
  fields: Record<string, string>;
  /** The rootfs's inputs; a relative path is relative to the checkout that built it. */
  inputs: { sha256: string; path: string }[];
}

export function parseImageRecord(path: string, text: string): ImageRecord {
  const fields: Record<string, string> = {};
  const inputs: ImageRecord['inputs'] = [];
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const name = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (name === 'input') {
      const m = /^([0-9a-f]{64}) (.+)$/.exec(value);
      if (!m) throw new ImageRecordError(path, `bad input line ${JSON.stringify(line)}`);
      inputs.push({ sha256: m[1]!, path: m[2]! });
    } else fields[name] = value;
  }
  const { key, sha256 } = fields;
  if (!key || !sha256 || !/^[0-9a-f]{64}$/.test(sha256)) throw new ImageRecordError(path, 'no key= and sha256= lines; rebuild the image');
  return { key, sha256, fields, inputs };
}

/** "6.1.192-kata-ts" from a kernel's .config: the version in its header and CONFIG_LOCALVERSION. */
export function kernelReleaseOf(configText: string): string | undefined {
  const version = /^# Linux\/\S+ (\S+) Kernel Configuration$/m.exec(configText)?.[1];
  if (!version) return undefined;
  return version + (/^CONFIG_LOCALVERSION="([^"]*)"$/m.exec(configText)?.[1] ?? '');
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The image compared with the checkout's current build inputs (only where check runs from a checkout). */
export interface CurrentInputs {
  /** The kernel: the key its build script gives the inputs now. */
  key?: string;
  /** The rootfs: recorded inputs whose content differs now, and those not found. */
  changed: string[];
  missing: string[];
  /** Why the comparison could not be made. */
  error?: string;
}

export interface ImageFacts {
  path: string;
  /** Bytes; undefined when the image is missing or unreadable (then `error` says why). */
  size?: number;
  error?: string;
  record?: ImageRecord;
  /** The record exists but cannot be read or parsed. */
  recordError?: string;
  /** The image's sha256 equals its record's. */
  digestMatches?: boolean;
  current?: CurrentInputs;
  /** The kernel's release, from <kernel>.config. */
  release?: string;
}

const errText = (err: unknown) => ((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message);

async function readRecord(image: string): Promise<Pick<ImageFacts, 'record' | 'recordError'>> {
  const path = `${image}.key`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? {} : { recordError: `${path}: ${errText(err)}` };
  }
  try {
    return { record: parseImageRecord(path, text) };
  } catch (err) {
    return { recordError: (err as Error).message };
  }
}

/** The image, its record and, when `verify`, whether its content still is what was recorded. */
export async function inspectImage(path: string, verify: boolean): Promise<ImageFacts> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) return { path, error: 'not a regular file' };
    size = st.size;
  } catch (err) {
    return { path, error: errText(err) };
  }
  const facts: ImageFacts = { path, size, ...(await readRecord(path)) };
  if (verify && facts.record) {
    try {
      facts.digestMatches = (await sha256File(path)) === facts.record.sha256;
    } catch (err) {
      facts.error = `cannot read it: ${(err as Error).message}`;
    }
  }
  return facts;
}

/** The kernel, with its release and, in a checkout, the key its build script gives the current inputs. */
export async function inspectKernel(path: string, checkout: string | undefined, verify: boolean): Promise<ImageFacts> {
  const facts = await inspectImage(path, verify);
  const release = kernelReleaseOf(await readFile(`${path}.config`, 'utf8').catch(() => ''));
  if (release) facts.release = release;
  if (verify && checkout && facts.record) {
    try {
      const { stdout } = await run('bash', [join(checkout, 'images/kernel/build.sh'), '--key'], { timeout: KEY_TIMEOUT_MS });
      facts.current = { key: stdout.trim(), changed: [], missing: [] };
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.trim();
      facts.current = { changed: [], missing: [], error: stderr || (err as Error).message };
    }
  }
  return facts;
}

/** The rootfs and, in a checkout, which of its recorded inputs changed since it was built. */
export async function inspectRootfs(path: string, checkout: string | undefined, verify: boolean): Promise<ImageFacts> {
  const facts = await inspectImage(path, verify);
  if (verify && checkout && facts.record) {
    const current: CurrentInputs = { changed: [], missing: [] };
    await Promise.all(
      facts.record.inputs.map(async (input) => {
        const file = isAbsolute(input.path) ? input.path : join(checkout, input.path);
        try {
          if ((await sha256File(file)) !== input.sha256) current.changed.push(input.path);
        } catch {
          current.missing.push(input.path);
        }
      }),
    );
    current.changed.sort();
    current.missing.sort();
    facts.current = current;
  }
  return facts;
}
