// `make install` as a new host gets it: the installed runtime stands on its own
// (the checkout hidden), on a host where no shim ever made containerd's shim
// socket folder, and `make uninstall` takes all of it away again.
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, REPO } from '../helpers/containerd.js';
import { eventually, sandboxProcesses } from '../helpers/host-state.js';

const make = (target: string, prefix: string, bindir: string) =>
  execFileSync('make', ['-s', '-C', REPO, target, `PREFIX=${prefix}`, `BINDIR=${bindir}`], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });

/** Every file below dir, relative to it. */
function filesUnder(dir: string, rel = ''): string[] {
  return readdirSync(join(dir, rel), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(dir, join(rel, e.name)) : [join(rel, e.name)],
  );
}

describe('make install', () => {
  let tmp: string;
  let prefix: string;
  let bindir: string;

  beforeAll(() => {
    tmp = mkdtempSync('/tmp/kinst-');
    prefix = join(tmp, 'opt/kata-ts');
    bindir = join(tmp, 'bin');
    make('install', prefix, bindir);
  }, 300_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('puts one runtime folder under the prefix, its shim on PATH, and no path into the checkout', () => {
    const files = filesUnder(prefix);
    // The default root filesystem of `kata-ts job run`.
    expect(files).toContain('busybox-rootfs/bin/sh');
    expect(files.filter((f) => !f.startsWith('busybox-rootfs/')).sort()).toEqual(
      [
        'bin/containerd-shim-kata-ts-v2',
        'bin/kata-ts',
        'configuration.toml',
        'rootfs.img',
        'shim/containerd-shim-kata-ts-v2.cjs',
        'shim/cri-runtime-v1.json',
        'shim/kata-ts.cjs',
        'shim/kata_ts_native.node',
        'shim/shim.cjs',
        'vmlinux',
        'vmlinux.config',
        'vmlinux.key',
        'rootfs.img.key',
      ].sort(),
    );
    const onPath = join(bindir, 'containerd-shim-kata-ts-v2');
    expect(lstatSync(onPath).isSymbolicLink()).toBe(true);
    expect(execFileSync(onPath, ['-v']).toString()).toMatch(/^containerd-shim-kata-ts-v2 /);
    expect(lstatSync(join(bindir, 'kata-ts')).isSymbolicLink()).toBe(true);
    expect(execFileSync(join(bindir, 'kata-ts'), ['--help']).toString()).toMatch(/kata-ts COMMAND[\s\S]*cri /);
    for (const file of ['bin/containerd-shim-kata-ts-v2', 'bin/kata-ts', 'shim/shim.cjs', 'shim/containerd-shim-kata-ts-v2.cjs', 'shim/kata-ts.cjs'])
      expect(readFileSync(join(prefix, file), 'utf8')).not.toContain(REPO);
  });

  it('runs a container with the checkout hidden, on a host without /run/containerd/s', () => {
    const script = join(REPO, 'test/e2e/fresh-host.sh');
    // The script hides the checkout it is in; `source` reads it whole before it runs.
    const out = execFileSync(
      'unshare',
      ['--mount', '--propagation', 'private', 'bash', '-c', 'source "$0" "$@"', script, REPO, join(prefix, 'bin'), BUSYBOX_IMAGE_TAR, BUSYBOX_IMAGE],
      { timeout: 240_000, stdio: ['ignore', 'pipe', 'pipe'] },
    ).toString();
    const field = (key: string) => [...out.matchAll(new RegExp(`^${key}: (.*)$`, 'gm'))].map((m) => m[1]);
    expect(field('socket folder before')).toEqual(['missing']);
    expect(field('run exit')).toEqual(['0']);
    expect(field('run output')[0]).toMatch(/^ran in \S+-kata-ts$/);
    expect(field('socket folder after')).toEqual(['700']);
    expect(field('shim socket')).toEqual(['600']);
    expect(field('shim sockets left')).toEqual(['0']);
    expect(field('job exit')).toEqual(['0']);
    expect(field('job output')[0]).toMatch(/^job ran in \S+-kata-ts$/);
  }, 300_000);

  it('is taken away whole by make uninstall', async () => {
    make('uninstall', prefix, bindir);
    expect(existsSync(prefix)).toBe(false);
    expect(existsSync(join(bindir, 'containerd-shim-kata-ts-v2'))).toBe(false);
    expect(existsSync(join(bindir, 'kata-ts'))).toBe(false);
    await eventually(() => sandboxProcesses().length === 0, 15_000);
  });
});
