// Writes an NVDIMM_PFN_INFO block into a rootfs image so the guest sees the
// nvdimm as an fsdax namespace (mode=memory) and can mount it with DAX.
// Layout: the info block at 4 KiB, the filesystem at 2 MiB, the image size a
// multiple of 2 MiB. The struct is Linux's struct nd_pfn_sb (version 1.4).
import { openSync, writeSync, closeSync, fstatSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

export const INFO_OFFSET = 4096;
export const DATA_OFFSET = 2 * 1024 * 1024;
const SIZE = 4096;
const PFN_MODE_RAM = 1; // the page map lives in guest RAM: the read-only device is never written
const PAGE_SIZE = 4096;
const PAGE_STRUCT_SIZE = 64;

/** Linux's nd_fletcher64 over little-endian 32-bit words. */
export function fletcher64(buf: Buffer): bigint {
  let lo = 0n;
  let hi = 0n;
  for (let i = 0; i + 4 <= buf.length; i += 4) {
    lo = (lo + BigInt(buf.readUInt32LE(i))) & 0xffffffffn;
    hi = hi + lo;
  }
  return ((hi << 32n) | lo) & 0xffffffffffffffffn;
}

export function pfnInfoBlock(imageSize: number, uuid: Buffer = randomBytes(16)): Buffer {
  if (imageSize % DATA_OFFSET !== 0 || imageSize <= DATA_OFFSET)
    throw new Error(`image size ${imageSize} must be a multiple of 2 MiB and larger than 2 MiB`);
  const b = Buffer.alloc(SIZE);
  b.write('NVDIMM_PFN_INFO\0', 0, 'latin1');
  uuid.copy(b, 16, 0, 16); // uuid; parent_uuid (32..47) stays zero: a label-less namespace
  b.writeUInt32LE(0, 48); // flags
  b.writeUInt16LE(1, 52); // version major
  b.writeUInt16LE(4, 54); // version minor
  b.writeBigUInt64LE(BigInt(DATA_OFFSET), 56); // dataoff
  b.writeBigUInt64LE(BigInt((imageSize - DATA_OFFSET) / PAGE_SIZE), 64); // npfns
  b.writeUInt32LE(PFN_MODE_RAM, 72); // mode
  b.writeUInt32LE(0, 76); // start_pad
  b.writeUInt32LE(0, 80); // end_trunc
  b.writeUInt32LE(DATA_OFFSET, 84); // align
  b.writeUInt32LE(PAGE_SIZE, 88); // page_size
  b.writeUInt16LE(PAGE_STRUCT_SIZE, 92); // page_struct_size
  b.writeBigUInt64LE(fletcher64(b), SIZE - 8); // checksum, computed with the field zero
  return b;
}

export function writePfnInfo(imagePath: string): void {
  const fd = openSync(imagePath, 'r+');
  try {
    const block = pfnInfoBlock(fstatSync(fd).size);
    writeSync(fd, block, 0, block.length, INFO_OFFSET);
  } finally {
    closeSync(fd);
  }
}
