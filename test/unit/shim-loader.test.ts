// The bundled shim's loader (shim/loader/containerd-shim-kata-ts-v2.cjs), run
// by a real node on a small stand-in bundle that reports whether it was
// offered the hook that saves a code cache.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const LOADER = join(import.meta.dirname, '../../shim/loader/containerd-shim-kata-ts-v2.cjs');

// Like the shim: takes the hook only when told it served (here: when asked to).
const STAND_IN = `
const hook = globalThis.__kataTsSaveCodeCache;
process.stdout.write(JSON.stringify({ offered: typeof hook === 'function', args: process.argv.slice(2), file: __filename }));
if (hook && process.argv.includes('served')) hook();
`;

describe('shim loader', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kata-ts-loader-'));
    copyFileSync(LOADER, join(dir, 'containerd-shim-kata-ts-v2.cjs'));
    writeFileSync(join(dir, 'shim.cjs'), STAND_IN);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const run = (...args: string[]) => runAs(undefined, ...args);
  const runAs = (uid: number | undefined, ...args: string[]) =>
    JSON.parse(
      execFileSync(process.execPath, [join(dir, 'containerd-shim-kata-ts-v2.cjs'), ...args], {
        encoding: 'utf8',
        ...(uid === undefined ? {} : { uid }),
      }),
    ) as { offered: boolean; args: string[]; file: string };
  const caches = () => readdirSync(dir).filter((name) => name.endsWith('.v8cache'));

  it('runs the bundle beside it with the arguments it was given', () => {
    const r = run('-id', 'c1', 'delete');
    expect(r.args).toEqual(['-id', 'c1', 'delete']);
    expect(r.file).toBe(join(dir, 'shim.cjs'));
  });

  it('writes a cache only when the shim asks, and then no longer offers to', () => {
    expect(run('delete').offered).toBe(true);
    expect(caches()).toEqual([]);
    expect(run('served').offered).toBe(true);
    expect(caches()).toHaveLength(1);
    expect(caches()[0]).toMatch(/^shim\.cjs\./);
    // V8 accepted the cache: nothing left to save.
    expect(run('served').offered).toBe(false);
  });

  it('replaces the cache of an earlier build of the bundle', () => {
    run('served');
    const first = caches();
    // Same length, new build: only the file's identity tells them apart, never V8's check.
    writeFileSync(join(dir, 'shim.cjs'), STAND_IN.replaceAll('hook', 'hooq'));
    utimesSync(join(dir, 'shim.cjs'), new Date(), new Date(Date.now() + 5000));
    expect(run('served').offered).toBe(true);
    const second = caches();
    expect(second).toHaveLength(1);
    expect(second).not.toEqual(first);
  });

  it.runIf(process.getuid?.() === 0)('still runs the shim where its folder cannot be written', () => {
    chmodSync(dir, 0o755); // readable by nobody, writable only by root
    const nobody = 65534;
    expect(runAs(nobody, 'served').offered).toBe(true);
    expect(runAs(nobody, 'served').offered).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['containerd-shim-kata-ts-v2.cjs', 'shim.cjs']);
  });
});
