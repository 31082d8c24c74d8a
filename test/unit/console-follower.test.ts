// The guest console follower: lines as QEMU appends them, in order, the last one even unterminated.
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConsoleFollower } from '../../shim/src/hypervisor/console-follower.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('ConsoleFollower', () => {
  it('hands on complete lines as they are appended, then the rest at close', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-console-'));
    dirs.push(dir);
    const path = join(dir, 'console.log');
    const lines: string[] = [];
    const follower = new ConsoleFollower(path, (l) => lines.push(l));
    follower.start(); // before QEMU created the file
    await new Promise((r) => setTimeout(r, 300));
    appendFileSync(path, '[    0.1] booting\r\nkata-ts-init: sta');
    await new Promise((r) => setTimeout(r, 600));
    expect(lines).toEqual(['[    0.1] booting']);
    appendFileSync(path, 'rting agent\n\nlast words');
    await follower.close();
    expect(lines).toEqual(['[    0.1] booting', 'kata-ts-init: starting agent', 'last words']);
  });
});
