import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capFile } from '../../shim/src/hypervisor/console-cap.js';

const dir = mkdtempSync(join(tmpdir(), 'kata-ts-console-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('capFile', () => {
  it('leaves a file within the bound alone', async () => {
    const path = join(dir, 'small.log');
    writeFileSync(path, 'boot\n');
    expect(await capFile(path, 100, 50)).toBe(false);
    expect(readFileSync(path, 'utf8')).toBe('boot\n');
  });

  it('cuts a file over the bound to its newest part, and an appending writer goes on at the new end', async () => {
    const path = join(dir, 'flood.log');
    const lines = Array.from({ length: 100 }, (_, i) => `line ${String(i).padStart(3, '0')}\n`).join('');
    writeFileSync(path, lines);
    expect(await capFile(path, 500, 90)).toBe(true);
    expect(statSync(path).size).toBe(90);
    expect(readFileSync(path, 'utf8')).toBe(lines.slice(-90));
    appendFileSync(path, 'after the cut\n'); // as QEMU's append=on writes
    expect(readFileSync(path, 'utf8').endsWith('line 099\nafter the cut\n')).toBe(true);
  });

  it('is fine with a file that is not there yet', async () => {
    expect(await capFile(join(dir, 'none.log'))).toBe(false);
  });
});
