import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { PodStorage } from '../../agent/src/pod-storage.js';
import type { NativeAddon } from '../../native/native.js';

const dir = mkdtempSync(join(tmpdir(), 'kata-ts-pod-storage-'));
const shared = join(dir, 'shared');
mkdirSync(join(shared, 'c1/mounts/0'), { recursive: true });
writeFileSync(join(shared, 'c1/mounts/0/file'), 'x');
symlinkSync('/etc', join(shared, 'c1/mounts/escape'));
symlinkSync('0', join(shared, 'c1/mounts/inside'));
const mounted: string[] = [];
const native = { mount: (_s: string, target: string) => void mounted.push(target), umount: () => undefined } as unknown as NativeAddon;
const storage = new PodStorage(shared, join(dir, 'tmpfs'), native, createLogger({ level: 'error' }));
const bind = (destination: string) => ({ destination, type: 'bind', source: '/host/path', options: ['rbind'] });
const shareOf = (value: string) => ({ index: 0, source: { $case: 'sharedPath' as const, value } });

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('PodStorage', () => {
  it('resolves a shared source inside the share, following symlinks that stay inside', async () => {
    expect(await storage.resolve([bind('/data')], [shareOf('c1/mounts/0')])).toEqual(new Map([[0, join(shared, 'c1/mounts/0')]]));
    expect(await storage.resolve([bind('/data')], [shareOf('c1/mounts/inside')])).toEqual(new Map([[0, join(shared, 'c1/mounts/0')]]));
  });

  it.each([
    ['c1/mounts/escape', /mount \/data: its source leads outside the shared filesystem \(to \/etc\)/],
    ['../../etc', /mount \/data: shared path "..\/..\/etc" must be relative and inside/],
    ['/etc', /must be relative/],
    ['c1/mounts/missing', /mount \/data: its source \(\/host\/path\) is not in the shared filesystem/],
  ])('refuses %s, naming the mount', async (path, message) => {
    await expect(storage.resolve([bind('/data')], [shareOf(path)])).rejects.toThrow(message);
  });

  it('makes one tmpfs per pod name, shared by every container that names it', async () => {
    const shm = { index: 0, source: { $case: 'podTmpfs' as const, value: { name: 'shm', sizeBytes: 65536 } } };
    const first = await storage.resolve([bind('/dev/shm')], [shm]);
    const second = await storage.resolve([bind('/dev/shm')], [shm]);
    expect(first.get(0)).toBe(join(dir, 'tmpfs/shm'));
    expect(second.get(0)).toBe(first.get(0));
    expect(mounted).toEqual([join(dir, 'tmpfs/shm')]);
    await expect(storage.resolve([bind('/x')], [{ index: 0, source: { $case: 'podTmpfs', value: { name: '../up', sizeBytes: 1 } } }])).rejects.toThrow(/not valid/);
  });

  it('refuses a source for a mount that is not a bind mount', async () => {
    await expect(storage.resolve([{ destination: '/proc', type: 'proc', source: 'proc' }], [shareOf('c1/mounts/0')])).rejects.toThrow(/no bind mount at that index/);
  });
});
