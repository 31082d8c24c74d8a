// The debug console's wire format between `kata-ts exec` and a shim, once the
// HTTP connection is upgraded: frames of a type byte, a 32-bit big-endian
// payload length and the payload. Terminal bytes, resizes and the end of
// input go to the shim; terminal output and then the exit status (or why the
// session failed) come back.

export const FrameType = {
  /** Client → shim: bytes typed at the terminal. */
  input: 0x69, // i
  /** Client → shim: the terminal's new size (rows, columns: two 16-bit numbers). */
  resize: 0x72, // r
  /** Client → shim: no more input (the client's stdin ended). */
  inputEnd: 0x65, // e
  /** Shim → client: terminal output. */
  output: 0x6f, // o
  /** Shim → client: the process exited; a 32-bit status follows. Last frame. */
  exit: 0x78, // x
  /** Shim → client: the session failed; UTF-8 text says why. Last frame. */
  failure: 0x66, // f
} as const;

export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

export interface Frame {
  type: FrameTypeValue;
  payload: Buffer;
}

const HEADER_BYTES = 5;
/** Far above any read of a terminal; more is a broken peer. */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;
const KNOWN_TYPES = new Set<number>(Object.values(FrameType));

export class FrameError extends Error {
  constructor(message: string) {
    super(`debug console stream: ${message}`);
    this.name = 'FrameError';
  }
}

export function encodeFrame(type: FrameTypeValue, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_PAYLOAD_BYTES) throw new FrameError(`a payload of ${payload.length} bytes is over ${MAX_PAYLOAD_BYTES}`);
  const frame = Buffer.alloc(HEADER_BYTES + payload.length);
  frame[0] = type;
  frame.writeUInt32BE(payload.length, 1);
  frame.set(payload, HEADER_BYTES);
  return frame;
}

/** Output larger than one frame may carry, as several frames. */
export function encodeOutput(data: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  for (let off = 0; off < data.length; off += MAX_PAYLOAD_BYTES) frames.push(encodeFrame(FrameType.output, data.subarray(off, off + MAX_PAYLOAD_BYTES)));
  return frames;
}

export const resizeFrame = (rows: number, columns: number): Buffer => {
  const payload = Buffer.alloc(4);
  payload.writeUInt16BE(Math.min(rows, 0xffff), 0);
  payload.writeUInt16BE(Math.min(columns, 0xffff), 2);
  return encodeFrame(FrameType.resize, payload);
};

export function parseResize(payload: Buffer): { rows: number; columns: number } {
  if (payload.length !== 4) throw new FrameError(`a resize frame carries 4 bytes, not ${payload.length}`);
  return { rows: payload.readUInt16BE(0), columns: payload.readUInt16BE(2) };
}

export const exitFrame = (status: number): Buffer => {
  const payload = Buffer.alloc(4);
  payload.writeInt32BE(status, 0);
  return encodeFrame(FrameType.exit, payload);
};

export function parseExit(payload: Buffer): number {
  if (payload.length !== 4) throw new FrameError(`an exit frame carries 4 bytes, not ${payload.length}`);
  return payload.readInt32BE(0);
}

/** Cuts a byte stream into frames, however it was split on the way. */
export class FrameDecoder {
  #pending: Buffer = Buffer.alloc(0);

  /** The frames complete so far; throws FrameError on a frame no peer of ours sends. */
  push(chunk: Buffer): Frame[] {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const frames: Frame[] = [];
    while (this.#pending.length >= HEADER_BYTES) {
      const type = this.#pending[0]!;
      if (!KNOWN_TYPES.has(type)) throw new FrameError(`unknown frame type 0x${type.toString(16)}`);
      const length = this.#pending.readUInt32BE(1);
      if (length > MAX_PAYLOAD_BYTES) throw new FrameError(`a frame of ${length} bytes is over ${MAX_PAYLOAD_BYTES}`);
      if (this.#pending.length < HEADER_BYTES + length) break;
      frames.push({ type: type as FrameTypeValue, payload: this.#pending.subarray(HEADER_BYTES, HEADER_BYTES + length) });
      this.#pending = this.#pending.subarray(HEADER_BYTES + length);
    }
    return frames;
  }

  /** Bytes of a frame not yet complete. */
  get pendingBytes(): number {
    return this.#pending.length;
  }
}
