import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkExecutable, resolveInRoot } from '../../agent/src/exec-lookup.js';

const root = mkdtempSync(join(tmpdir(), 'kata-ts-lookup-'));
mkdirSync(join(root, 'bin'));
mkdirSync(join(root, 'opt/app'), { recursive: true });
writeFileSync(join(root, 'bin/busybox'), '', { mode: 0o755 });
writeFileSync(join(root, 'bin/data'), '', { mode: 0o644 });
symlinkSync('busybox', join(root, 'bin/sh'));
symlinkSync('/bin/busybox', join(root, 'bin/abs'));
symlinkSync('../../../../../../bin/busybox', join(root, 'opt/app/escape'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('resolveInRoot', () => {
  it('follows relative and absolute symlinks inside the root', async () => {
    expect(await resolveInRoot(root, '/bin/sh')).toBe(join(root, 'bin/busybox'));
    expect(await resolveInRoot(root, '/bin/abs')).toBe(join(root, 'bin/busybox'));
  });
  it('never leaves the root through ..', async () => {
    expect(await resolveInRoot(root, '/opt/app/escape')).toBe(join(root, 'bin/busybox'));
  });
  it('returns undefined for a missing path', async () => {
    expect(await resolveInRoot(root, '/bin/nothing')).toBeUndefined();
  });
});

describe('checkExecutable', () => {
  it('finds a command on the PATH from the env', async () => {
    await expect(checkExecutable(root, 'sh', ['PATH=/usr/bin:/bin'], '/')).resolves.toBeUndefined();
  });
  it('names the command and PATH when it is missing', async () => {
    await expect(checkExecutable(root, 'nope', ['PATH=/bin'], '/')).rejects.toThrow('executable nope not found in $PATH (/bin)');
  });
  it('refuses a file that is not executable', async () => {
    await expect(checkExecutable(root, '/bin/data', [], '/')).rejects.toThrow(/not an executable file/);
  });
  it('resolves a relative path against the cwd', async () => {
    await expect(checkExecutable(root, './busybox', [], '/bin')).resolves.toBeUndefined();
  });
});
