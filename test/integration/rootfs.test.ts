// The rootfs mounts containerd describes, made and undone for real (root only).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mountRootfs, unmountRootfs } from '../../shim/src/containerd/rootfs.js';
import { isMountPoint } from '../../shim/src/sandbox/host-mounts.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) {
    await unmountRootfs(d);
    rmSync(d, { recursive: true, force: true });
  }
});

describe('mountRootfs', () => {
  it('mounts every layer it is given, and unmountRootfs takes them all off', async () => {
    const target = mkdtempSync(join(tmpdir(), 'kata-ts-rootfs-'));
    dirs.push(target);
    await mountRootfs([{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }, { type: 'tmpfs', source: 'tmpfs', options: ['size=2m'] }], target);
    expect(isMountPoint(target)).toBe(true);
    await unmountRootfs(target);
    expect(isMountPoint(target)).toBe(false);
  });

  it('leaves nothing mounted when a later mount fails, and names the one that failed', async () => {
    const target = mkdtempSync(join(tmpdir(), 'kata-ts-rootfs-'));
    dirs.push(target);
    const failing = mountRootfs([{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }, { type: 'kata-ts-no-such-fs', source: '/nonexistent' }], target);
    await expect(failing).rejects.toThrow(/cannot mount the rootfs \(kata-ts-no-such-fs \/nonexistent\)/);
    expect(isMountPoint(target)).toBe(false);
  });
});
