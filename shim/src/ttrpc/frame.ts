// The ttrpc frame: a 10-byte header (data length, stream id, type, flags, all
// big-endian) followed by the data. Pure byte code with no I/O, so the
// decoder can be tested by feeding it arbitrary splits of arbitrary bytes.

export const FRAME_HEADER_BYTES = 10;

/** The size limit ttrpc uses on both sides (4 MiB). */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 << 20;

export const FrameType = {
  Request: 1,
  Response: 2,
  /** Streaming data (ttrpc 1.2+). containerd 1.6 never sends it; we ignore it. */
  Data: 3,
} as const;

export interface Frame {
  readonly streamId: number;
  /** One of FrameType, or an unknown value a newer peer may send. */
  readonly type: number;
  readonly flags: number;
  readonly data: Uint8Array;
}

const MAX_UINT32 = 0xffff_ffff;

/** Thrown by encodeFrame, and returned in order by FrameDecoder.feed, for data over the limit. */
export class FrameTooLargeError extends Error {
  constructor(
    readonly streamId: number,
    readonly length: number,
    readonly maxLength: number,
  ) {
    super(`message length ${length} exceeds the maximum message size of ${maxLength}`);
    this.name = 'FrameTooLargeError';
  }
}

function checkUint32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_UINT32) throw new RangeError(`ttrpc frame: ${name} ${value} is not a uint32`);
}

/** Builds one frame. Throws FrameTooLargeError if data is over maxLength. */
export function encodeFrame(frame: Frame, maxLength = DEFAULT_MAX_MESSAGE_BYTES): Uint8Array {
  checkUint32('stream id', frame.streamId);
  if (frame.data.length > maxLength) throw new FrameTooLargeError(frame.streamId, frame.data.length, maxLength);
  const out = new Uint8Array(FRAME_HEADER_BYTES + frame.data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, frame.data.length);
  view.setUint32(4, frame.streamId);
  view.setUint8(8, frame.type & 0xff);
  view.setUint8(9, frame.flags & 0xff);
  out.set(frame.data, FRAME_HEADER_BYTES);
  return out;
}

/**
 * Incremental decoder: feed it chunks as they arrive, get back whole frames.
 *
 * A header announcing more than maxLength bytes allocates nothing: the
 * decoder reports a FrameTooLargeError in the frame's place and skips the body
 * as it arrives, so it stays in step with the stream. Whether to keep using
 * the connection after that is the caller's policy.
 */
export class FrameDecoder {
  readonly #maxLength: number;
  readonly #header = new Uint8Array(FRAME_HEADER_BYTES);
  #headerFilled = 0;
  #body: Uint8Array | undefined;
  #bodyFilled = 0;
  #skipRemaining = 0;
  #streamId = 0;
  #type = 0;
  #flags = 0;

  constructor(maxLength = DEFAULT_MAX_MESSAGE_BYTES) {
    this.#maxLength = maxLength;
  }

  /** True when the bytes fed so far end inside a frame (a truncated stream if the peer is gone). */
  get isMidFrame(): boolean {
    return this.#headerFilled > 0 || this.#body !== undefined || this.#skipRemaining > 0;
  }

  feed(chunk: Uint8Array): (Frame | FrameTooLargeError)[] {
    const out: (Frame | FrameTooLargeError)[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      if (this.#skipRemaining > 0) {
        const n = Math.min(this.#skipRemaining, chunk.length - pos);
        this.#skipRemaining -= n;
        pos += n;
      } else if (this.#body === undefined) {
        const n = Math.min(FRAME_HEADER_BYTES - this.#headerFilled, chunk.length - pos);
        this.#header.set(chunk.subarray(pos, pos + n), this.#headerFilled);
        this.#headerFilled += n;
        pos += n;
        if (this.#headerFilled === FRAME_HEADER_BYTES) this.#startBody(out);
      } else {
        const n = Math.min(this.#body.length - this.#bodyFilled, chunk.length - pos);
        this.#body.set(chunk.subarray(pos, pos + n), this.#bodyFilled);
        this.#bodyFilled += n;
        pos += n;
        if (this.#bodyFilled === this.#body.length) this.#finishFrame(out);
      }
    }
    return out;
  }

  #startBody(out: (Frame | FrameTooLargeError)[]): void {
    const view = new DataView(this.#header.buffer);
    const length = view.getUint32(0);
    this.#streamId = view.getUint32(4);
    this.#type = view.getUint8(8);
    this.#flags = view.getUint8(9);
    this.#headerFilled = 0;
    if (length > this.#maxLength) {
      out.push(new FrameTooLargeError(this.#streamId, length, this.#maxLength));
      this.#skipRemaining = length;
      return;
    }
    this.#body = new Uint8Array(length);
    this.#bodyFilled = 0;
    if (length === 0) this.#finishFrame(out);
  }

  #finishFrame(out: (Frame | FrameTooLargeError)[]): void {
    const data = this.#body ?? new Uint8Array(0);
    out.push({ streamId: this.#streamId, type: this.#type, flags: this.#flags, data });
    this.#body = undefined;
    this.#bodyFilled = 0;
  }
}
