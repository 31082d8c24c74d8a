import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeFrame,
  FrameDecoder,
  FrameTooLargeError,
  FrameType,
  type Frame,
} from '../../shim/src/ttrpc/frame.js';

const bytes = (...values: number[]) => Uint8Array.from(values);
const text = (s: string) => new TextEncoder().encode(s);

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** A header announcing `length` bytes that are never sent. */
function header(length: number, streamId: number, type: number = FrameType.Request, flags = 0): Uint8Array {
  const h = new Uint8Array(10);
  const view = new DataView(h.buffer);
  view.setUint32(0, length);
  view.setUint32(4, streamId);
  view.setUint8(8, type);
  view.setUint8(9, flags);
  return h;
}

const frames: Frame[] = [
  { streamId: 1, type: FrameType.Request, flags: 0, data: text('first request') },
  { streamId: 2, type: FrameType.Response, flags: 0, data: new Uint8Array(0) },
  { streamId: 3, type: FrameType.Data, flags: 0x05, data: bytes(0, 255, 1, 254) },
  { streamId: 0xffff_ffff, type: 9, flags: 0xff, data: text('x'.repeat(300)) },
];
const stream = concat(frames.map((f) => encodeFrame(f)));

function asPlain(items: (Frame | FrameTooLargeError)[]) {
  return items.map((i) => (i instanceof FrameTooLargeError ? i : { ...i, data: [...i.data] }));
}
const expected = asPlain(frames);

describe('ttrpc frame codec', () => {
  it('writes the 10-byte big-endian header before the data', () => {
    const out = encodeFrame({ streamId: 0x01020304, type: FrameType.Response, flags: 0x02, data: bytes(0xaa, 0xbb) });
    expect([...out]).toEqual([0, 0, 0, 2, 1, 2, 3, 4, 2, 2, 0xaa, 0xbb]);
  });

  it('decodes several frames delivered in one chunk, in order', () => {
    expect(asPlain(new FrameDecoder().feed(stream))).toEqual(expected);
  });

  it('decodes the same frames when the stream is split at every byte boundary', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const decoder = new FrameDecoder();
      const out = [...decoder.feed(stream.subarray(0, cut)), ...decoder.feed(stream.subarray(cut))];
      expect(asPlain(out), `cut at ${cut}`).toEqual(expected);
      expect(decoder.isMidFrame).toBe(false);
    }
  });

  it('decodes a stream fed one byte at a time, and returns nothing until a frame is whole', () => {
    const decoder = new FrameDecoder();
    const out: (Frame | FrameTooLargeError)[] = [];
    const firstLength = encodeFrame(frames[0]!).length;
    for (let i = 0; i < stream.length; i++) {
      const got = decoder.feed(stream.subarray(i, i + 1));
      if (i < firstLength - 1) expect(got).toEqual([]);
      out.push(...got);
    }
    expect(asPlain(out)).toEqual(expected);
  });

  it('reports a truncated frame as still in progress', () => {
    const decoder = new FrameDecoder();
    expect(decoder.feed(stream.subarray(0, 5))).toEqual([]);
    expect(decoder.isMidFrame).toBe(true);
    expect(decoder.feed(stream.subarray(5, 14))).toEqual([]);
    expect(decoder.isMidFrame).toBe(true);
  });

  it('accepts a body of exactly the limit and rejects one byte more, with the stream id and size', () => {
    const decoder = new FrameDecoder(16);
    const [ok] = decoder.feed(encodeFrame({ streamId: 7, type: 1, flags: 0, data: new Uint8Array(16) }, 16));
    expect(ok).not.toBeInstanceOf(FrameTooLargeError);
    expect((ok as Frame).data.length).toBe(16);
    const [err] = decoder.feed(header(17, 9));
    expect(err).toBeInstanceOf(FrameTooLargeError);
    expect(err).toMatchObject({ streamId: 9, length: 17, maxLength: 16 });
  });

  it('uses 4 MiB as the default limit', () => {
    expect(DEFAULT_MAX_MESSAGE_BYTES).toBe(4 * 1024 * 1024);
    const [err] = new FrameDecoder().feed(header(DEFAULT_MAX_MESSAGE_BYTES + 1, 1));
    expect(err).toMatchObject({ length: DEFAULT_MAX_MESSAGE_BYTES + 1, maxLength: DEFAULT_MAX_MESSAGE_BYTES });
  });

  it('skips an oversized body without buffering it and decodes the frame after it', () => {
    const decoder = new FrameDecoder(64);
    const junk = new Uint8Array(1000).fill(7);
    const next = encodeFrame({ streamId: 5, type: 1, flags: 0, data: text('after') });
    const out = [...decoder.feed(concat([header(1000, 3), junk.subarray(0, 400)])), ...decoder.feed(concat([junk.subarray(400), next]))];
    expect(out).toHaveLength(2);
    expect(out[0]).toMatchObject({ streamId: 3, length: 1000 });
    expect(new TextDecoder().decode((out[1] as Frame).data)).toBe('after');
  });

  it('does not allocate for a 4 GiB length', () => {
    const decoder = new FrameDecoder();
    const [err] = decoder.feed(header(0xffff_ffff, 1));
    expect(err).toMatchObject({ length: 0xffff_ffff });
    expect(decoder.feed(new Uint8Array(1 << 20))).toEqual([]);
    expect(decoder.isMidFrame).toBe(true);
  });

  it('reads ASCII garbage as an oversized frame', () => {
    const [err] = new FrameDecoder().feed(text('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(err).toBeInstanceOf(FrameTooLargeError);
    expect((err as FrameTooLargeError).length).toBe(0x47455420); // "GET "
  });

  it('never throws on random bytes in random chunks, and never yields a body over the limit', () => {
    let seed = 12345;
    const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const seen = { frames: 0, oversized: 0 };
    for (let run = 0; run < 50; run++) {
      const decoder = new FrameDecoder(256);
      // Plausible frames with random sizes and bodies, mixed with stray bytes that break the framing.
      const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(random() * 256));
      const segments: Uint8Array[] = [];
      for (let i = 0; i < 20; i++) {
        const length = Math.floor(random() * 320);
        if (random() < 0.7) segments.push(header(length, Math.floor(random() * 100), Math.floor(random() * 4)), randomBytes(length));
        else segments.push(randomBytes(1 + Math.floor(random() * 20)));
      }
      const input = concat(segments);
      let pos = 0;
      while (pos < input.length) {
        const n = 1 + Math.floor(random() * 64);
        for (const item of decoder.feed(input.subarray(pos, pos + n))) {
          if (item instanceof FrameTooLargeError) expect(item.length).toBeGreaterThan(256);
          else expect(item.data.length).toBeLessThanOrEqual(256);
          seen[item instanceof FrameTooLargeError ? 'oversized' : 'frames']++;
        }
        pos += n;
      }
    }
    expect(seen.frames).toBeGreaterThan(0);
    expect(seen.oversized).toBeGreaterThan(0);
  });

  it('refuses to encode data over the limit or a stream id that is not a uint32', () => {
    expect(() => encodeFrame({ streamId: 1, type: 1, flags: 0, data: new Uint8Array(9) }, 8)).toThrow(FrameTooLargeError);
    expect(() => encodeFrame({ streamId: 2 ** 32, type: 1, flags: 0, data: new Uint8Array(0) })).toThrow(RangeError);
    expect(() => encodeFrame({ streamId: -1, type: 1, flags: 0, data: new Uint8Array(0) })).toThrow(RangeError);
  });
});
