import { describe, expect, it } from 'vitest';
import { DATA_OFFSET, fletcher64, pfnInfoBlock } from '../../images/rootfs/nvdimm-pfn.js';

describe('NVDIMM_PFN_INFO block', () => {
  const size = 128 * 1024 * 1024;
  const uuid = Buffer.alloc(16, 0xab);
  const block = pfnInfoBlock(size, uuid);

  it('carries the fields Linux checks', () => {
    expect(block.length).toBe(4096);
    expect(block.subarray(0, 16).toString('latin1')).toBe('NVDIMM_PFN_INFO\0');
    expect(block.subarray(16, 32)).toEqual(uuid);
    expect(block.subarray(32, 48)).toEqual(Buffer.alloc(16));
    expect([block.readUInt16LE(52), block.readUInt16LE(54)]).toEqual([1, 4]);
    expect(block.readBigUInt64LE(56)).toBe(BigInt(DATA_OFFSET));
    expect(block.readBigUInt64LE(64)).toBe(BigInt((size - DATA_OFFSET) / 4096));
    expect(block.readUInt32LE(72)).toBe(1);
    expect(block.readUInt32LE(84)).toBe(DATA_OFFSET);
    expect(block.readUInt32LE(88)).toBe(4096);
    expect(block.readUInt16LE(92)).toBe(64);
  });

  it('has a checksum computed with the checksum field zeroed', () => {
    const stored = block.readBigUInt64LE(4088);
    const zeroed = Buffer.from(block);
    zeroed.writeBigUInt64LE(0n, 4088);
    expect(fletcher64(zeroed)).toBe(stored);
    expect(stored).not.toBe(0n);
  });

  it('computes fletcher64 like Linux (32-bit low sum, running high sum)', () => {
    const words = Buffer.alloc(12);
    words.writeUInt32LE(1, 0);
    words.writeUInt32LE(2, 4);
    words.writeUInt32LE(0xffffffff, 8);
    // lo: 1, 3, 2 (wrapped); hi: 1 + 3 + 2 = 6
    expect(fletcher64(words)).toBe((6n << 32n) | 2n);
  });

  it('rejects sizes that are not a multiple of 2 MiB', () => {
    expect(() => pfnInfoBlock(size + 4096)).toThrow(/multiple of 2 MiB/);
  });
});
