// Seeded malformed ttrpc traffic for the shim's bad-input test. A connection
// is a plan: a body of frames whose headers are in step with their data, each
// with the answer the server owes it (if any), then a tail that may throw the
// stream out of step or cut it. Pure: one seed always gives the same bytes.
import { containerd } from '../../proto/gen/containerd/containerd.js';
import { encodeRequest, type MetadataInit } from '../../shim/src/ttrpc/envelope.js';
import { DEFAULT_MAX_MESSAGE_BYTES, FRAME_HEADER_BYTES, FrameType } from '../../shim/src/ttrpc/frame.js';
import { Code } from '../../shim/src/ttrpc/status.js';

export const TASK_SERVICE = 'containerd.task.v2.Task';

/** xorshift32: tiny, and the same sequence on every run for a seed. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0 || 0x9e37_79b9; // zero is xorshift's one fixed point
  }

  uint32(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor((this.uint32() / 2 ** 32) * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.uint32() / 2 ** 32 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]!;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const x = this.uint32();
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (x >>> (8 * j)) & 0xff;
    }
    return out;
  }
}

// What a Task rpc answers when its payload decodes, with no task in the shim.
// Create (it mounts and boots a VM) and Shutdown (it ends the shim) are never sent.
const LOOKUP = [Code.NOT_FOUND, Code.INVALID_ARGUMENT];
const TASK_ANSWERS: Readonly<Record<string, readonly number[]>> = {
  State: LOOKUP,
  Start: LOOKUP,
  Delete: LOOKUP,
  Pids: LOOKUP,
  Pause: LOOKUP,
  Resume: LOOKUP,
  Kill: LOOKUP,
  Exec: LOOKUP,
  ResizePty: LOOKUP,
  CloseIO: LOOKUP,
  Update: LOOKUP,
  Wait: LOOKUP,
  Stats: LOOKUP,
  Checkpoint: [Code.UNIMPLEMENTED],
  Connect: [Code.OK],
};
const TASK_METHODS = Object.keys(TASK_ANSWERS);
/** A Request that does not decode, or decodes to a name nobody serves. */
const BAD_ENVELOPE = [Code.INVALID_ARGUMENT, Code.UNIMPLEMENTED];

const WRONG_SERVICES = [
  '',
  'containerd.task.v3.Task',
  'containerd.task.v2.task',
  'containerd.task.v2.Task.',
  ' containerd.task.v2.Task',
  'containerd.services.events.ttrpc.v1.Events',
  'grpc.health.v1.Health',
  '__proto__',
  'constructor',
  'hasOwnProperty',
];
// Names an object lookup could confuse with a method, next to near misses.
const WRONG_METHODS = ['', 'state', 'STATE', 'State ', 'create', 'shutdown', 'Wait2', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'then'];

const WireType = { Varint: 0, Fixed64: 1, Bytes: 2, GroupStart: 3, GroupEnd: 4, Fixed32: 5 } as const;

/** The fields of a Request, and those most Task requests start with (id, exec_id, then scalars). */
const REQUEST_FIELDS: Readonly<Record<number, number>> = { 1: WireType.Bytes, 2: WireType.Bytes, 3: WireType.Bytes, 4: WireType.Varint, 5: WireType.Bytes };
const TASK_FIELDS: Readonly<Record<number, number>> = { 1: WireType.Bytes, 2: WireType.Bytes, 3: WireType.Varint, 4: WireType.Varint };

/** Expected on stream `streamId`: one answer whose code is one of `codes`. */
export interface Answer {
  readonly streamId: number;
  readonly codes: readonly number[];
}

export interface PlannedFrame {
  readonly kind: string;
  readonly bytes: Uint8Array;
  /** Absent for frames the server ignores. */
  readonly answer?: Answer;
  /** False only for the well-formed probes mixed in to show the connection still works. */
  readonly malformed: boolean;
}

/**
 * What ends a connection. end: the client half-closes; reset: it destroys the socket; cut: part of
 * a frame, then destroyed; truncated: a header announcing more than follows, then half-closed;
 * oversized: a length over the limit (RESOURCE_EXHAUSTED, then the server closes); random: bytes;
 * unread: the same request, whose answer echoes a long name, again and again with the answers left
 * unread (the server must stop taking them in), then everything read and half-closed.
 */
export type TailKind = 'end' | 'reset' | 'cut' | 'truncated' | 'oversized' | 'random' | 'unread';

export interface Tail {
  readonly kind: TailKind;
  /** For unread: the Request envelope each frame carries. */
  readonly bytes: Uint8Array;
  /** For oversized: the stream the RESOURCE_EXHAUSTED answer is on; for unread: the first stream. */
  readonly streamId?: number;
}

export interface ConnectionPlan {
  readonly index: number;
  readonly frames: readonly PlannedFrame[];
  /** Offsets in the concatenated body where one write ends and the next begins. */
  readonly splits: readonly number[];
  readonly tail: Tail;
}

/** A header claiming `length`, whatever `data` holds. */
export function rawFrame(length: number, streamId: number, type: number, flags: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, length);
  view.setUint32(4, streamId);
  view.setUint8(8, type);
  view.setUint8(9, flags);
  out.set(data, FRAME_HEADER_BYTES);
  return out;
}

function varint(value: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, value);
  do {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? byte | 0x80 : byte);
  } while (v > 0n);
  return out;
}

const tag = (field: number, wireType: number) => varint(BigInt((field << 3) | wireType));

/** A value of `wireType` for `field`, well formed at the wire level. */
function wireValue(rng: Rng, field: number, wireType: number): number[] {
  switch (wireType) {
    case WireType.Varint:
      return [...tag(field, wireType), ...varint(BigInt(rng.uint32()) << BigInt(rng.int(0, 32)))];
    case WireType.Fixed64:
      return [...tag(field, wireType), ...rng.bytes(8)];
    case WireType.Bytes: {
      const data = rng.bytes(rng.int(0, 24));
      return [...tag(field, wireType), ...varint(BigInt(data.length)), ...data];
    }
    case WireType.GroupStart:
      return [...tag(field, WireType.GroupStart), ...wireValue(rng, field + 1, WireType.Varint), ...tag(field, WireType.GroupEnd)];
    default:
      return [...tag(field, WireType.Fixed32), ...rng.bytes(4)];
  }
}

/** Each known field with a wire type other than its own, plus now and then bytes no decoder accepts. */
function wrongWireTypes(rng: Rng, fields: Readonly<Record<number, number>>, skip: readonly number[] = []): number[] {
  const out: number[] = [];
  for (const [field, right] of Object.entries(fields).map(([f, t]) => [Number(f), t] as const)) {
    if (skip.includes(field) || rng.chance(0.2)) continue;
    const wrong = rng.pick([WireType.Varint, WireType.Fixed64, WireType.Bytes, WireType.GroupStart, WireType.Fixed32].filter((t) => t !== right));
    out.push(...wireValue(rng, field, wrong));
  }
  if (rng.chance(0.15)) out.push(...tag(rng.int(1, 40), rng.pick([6, 7]))); // wire types that do not exist
  if (rng.chance(0.1)) out.push(...tag(rng.int(1, 40), WireType.GroupEnd)); // a group that never began
  if (rng.chance(0.1)) out.push(...tag(rng.int(1, 40), WireType.GroupStart)); // one that never ends
  if (rng.chance(0.05)) out.push(0x00); // field number 0
  return out;
}

/** Groups nested far past any recursion limit: a decoder that recurses per level must stop, not overflow. */
function nestedGroups(depth: number): Uint8Array {
  return new Uint8Array(depth).fill((1 << 3) | WireType.GroupStart);
}

function randomName(rng: Rng): string {
  const chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-é☃';
  let name = '';
  for (let n = rng.int(0, 40); n > 0; n--) name += chars[rng.int(0, chars.length - 1)];
  return name;
}

const union = (a: readonly number[], b: readonly number[]) => [...new Set([...a, ...b])];

/** Builds the frames of one connection, keeping track of the stream ids it used. */
class ConnectionFuzzer {
  readonly #rng: Rng;
  readonly frames: PlannedFrame[] = [];
  readonly #used = new Set<number>();
  #nextStreamId = 1;

  constructor(rng: Rng) {
    this.#rng = rng;
  }

  /** An odd stream id not used yet on this connection: mostly in order, as clients do, now and then anywhere. */
  #streamId(): number {
    for (;;) {
      let id = (this.#rng.uint32() | 1) >>> 0;
      if (this.#rng.chance(0.9)) {
        id = this.#nextStreamId;
        this.#nextStreamId += 2;
      }
      if (!this.#used.has(id)) {
        this.#used.add(id);
        return id;
      }
    }
  }

  #flags(): number {
    return this.#rng.chance(0.2) ? this.#rng.int(0, 255) : 0;
  }

  #request(kind: string, envelope: Uint8Array, codes: readonly number[], malformed = true): void {
    const streamId = this.#streamId();
    const bytes = rawFrame(envelope.length, streamId, FrameType.Request, this.#flags(), envelope);
    this.frames.push({ kind, bytes, answer: { streamId, codes }, malformed });
  }

  #taskCall(kind: string, method: string, payload: Uint8Array, extraCodes: readonly number[], timeoutNano = 0, metadata: MetadataInit = {}): void {
    const envelope = encodeRequest({ service: TASK_SERVICE, method, payload, timeoutNano, metadata });
    this.#request(kind, envelope, union(TASK_ANSWERS[method]!, extraCodes));
  }

  addRandom(): void {
    const rng = this.#rng;
    const method = rng.pick(TASK_METHODS);
    const roll = rng.int(0, 99);
    if (roll < 10) {
      const service = rng.chance(0.7) ? rng.pick(WRONG_SERVICES) : randomName(rng);
      this.#request('unknown service', encodeRequest({ service, method, payload: rng.bytes(rng.int(0, 64)), timeoutNano: 0 }), [Code.UNIMPLEMENTED]);
    } else if (roll < 20) {
      const name = rng.chance(0.7) ? rng.pick(WRONG_METHODS) : randomName(rng);
      this.#request('unknown method', encodeRequest({ service: TASK_SERVICE, method: name, payload: rng.bytes(rng.int(0, 64)), timeoutNano: 0 }), [Code.UNIMPLEMENTED]);
    } else if (roll < 34) {
      this.#taskCall('garbage payload', method, rng.bytes(rng.int(1, 512)), [Code.INTERNAL]);
    } else if (roll < 46) {
      this.#taskCall('payload with wrong wire types', method, Uint8Array.from(wrongWireTypes(rng, TASK_FIELDS)), [Code.INTERNAL]);
    } else if (roll < 54) {
      this.#request('garbage envelope', rng.bytes(rng.int(1, 1024)), BAD_ENVELOPE);
    } else if (roll < 62) {
      this.#addEnvelopeWithWrongWireTypes(method);
    } else if (roll < 68) {
      this.#addEvenStreamId();
    } else if (roll < 74) {
      this.#addDuplicate();
    } else if (roll < 80) {
      this.#addNonRequest();
    } else if (roll < 83) {
      this.#request('empty request', new Uint8Array(0), [Code.UNIMPLEMENTED]);
    } else if (roll < 86) {
      this.#addNestedGroups(method);
    } else if (roll < 89) {
      this.#addInvalidUtf8(method);
    } else if (roll < 93) {
      const timeoutNano = rng.pick([-1, -(2 ** 62), 2 ** 63 - 1, 1, 2 ** 53]);
      this.#taskCall('odd timeout', method, this.#validPayload(method), [Code.DEADLINE_EXCEEDED], timeoutNano);
    } else if (roll < 95) {
      this.#addMetadataFlood(method);
    } else {
      // Well formed: after all of the above, the connection must still answer properly.
      this.#request('probe', encodeRequest({ service: TASK_SERVICE, method: 'State', payload: this.#validPayload('State'), timeoutNano: 0 }), [Code.NOT_FOUND], false);
    }
  }

  #validPayload(method: string): Uint8Array {
    const id = `absent-${this.#rng.int(0, 1e6)}`;
    if (method === 'Kill') return containerd.task.v2.KillRequest.encode({ id, signal: 9 }).finish();
    return containerd.task.v2.StateRequest.encode({ id }).finish(); // id = 1 in every Task request
  }

  /** Service and method right, every other field of the Request with the wrong wire type. */
  #addEnvelopeWithWrongWireTypes(method: string): void {
    const rng = this.#rng;
    if (rng.chance(0.5)) {
      this.#request('envelope with wrong wire types', Uint8Array.from(wrongWireTypes(rng, REQUEST_FIELDS)), BAD_ENVELOPE);
      return;
    }
    const names = encodeRequest({ service: TASK_SERVICE, method, payload: new Uint8Array(0), timeoutNano: 0 });
    const envelope = Uint8Array.from([...names, ...wrongWireTypes(rng, REQUEST_FIELDS, [1, 2])]);
    this.#request('envelope fields with wrong wire types', envelope, union(TASK_ANSWERS[method]!, [Code.INVALID_ARGUMENT]));
  }

  #addEvenStreamId(): void {
    const rng = this.#rng;
    const streamId = rng.chance(0.3) ? 0 : (rng.uint32() & 0xffff_fffe) >>> 0;
    const envelope = encodeRequest({ service: TASK_SERVICE, method: rng.pick(TASK_METHODS), payload: new Uint8Array(0), timeoutNano: 0 });
    const bytes = rawFrame(envelope.length, streamId, FrameType.Request, this.#flags(), envelope);
    this.frames.push({ kind: 'even stream id', bytes, answer: { streamId, codes: [Code.INVALID_ARGUMENT] }, malformed: true });
  }

  /** An earlier request sent again as is: its own answer, or "already in use" if the first is still in flight. */
  #addDuplicate(): void {
    const earlier = this.frames.filter((f) => f.answer !== undefined && f.answer.streamId % 2 === 1);
    if (earlier.length === 0) return this.addRandom();
    const first = this.#rng.pick(earlier);
    this.frames.push({ kind: 'duplicate stream id', bytes: first.bytes, answer: { streamId: first.answer!.streamId, codes: union(first.answer!.codes, [Code.INVALID_ARGUMENT]) }, malformed: true });
  }

  /** Responses, data frames and types no version defines, from a client: ignored, never answered. */
  #addNonRequest(): void {
    const rng = this.#rng;
    const type = rng.pick([0, FrameType.Response, FrameType.Data, 4, 0x7f, 0xff]);
    const data = rng.chance(0.5) ? encodeRequest({ service: TASK_SERVICE, method: 'State', payload: new Uint8Array(0), timeoutNano: 0 }) : rng.bytes(rng.int(0, 256));
    this.frames.push({ kind: `frame of type ${type}`, bytes: rawFrame(data.length, this.#streamId(), type, this.#flags(), data), malformed: true });
  }

  /** The service name with bytes that are not UTF-8 (a lone continuation byte, an overlong form). */
  #addInvalidUtf8(method: string): void {
    const name = [...new TextEncoder().encode('containerd.task.v2.Ta'), ...this.#rng.pick([[0x80], [0xc0, 0xaf], [0xff, 0xfe], [0xed, 0xa0, 0x80]]), 0x6b];
    const service = [...tag(1, WireType.Bytes), ...varint(BigInt(name.length)), ...name];
    const rest = encodeRequest({ service: '', method, payload: new Uint8Array(0), timeoutNano: 0 });
    this.#request('invalid UTF-8 in the service name', Uint8Array.from([...service, ...rest]), BAD_ENVELOPE);
  }

  #addNestedGroups(method: string): void {
    const depth = this.#rng.int(200, 100_000);
    if (this.#rng.chance(0.5)) this.#request('nested groups in the envelope', nestedGroups(depth), [Code.INVALID_ARGUMENT]);
    else this.#taskCall('nested groups in the payload', method, nestedGroups(depth), [Code.INTERNAL]);
  }

  #addMetadataFlood(method: string): void {
    const metadata: Record<string, string[]> = {};
    for (let i = this.#rng.int(100, 2000); i > 0; i--) (metadata[`k${i % 7}`] ??= []).push(randomName(this.#rng));
    this.#taskCall('metadata flood', method, this.#validPayload(method), [], 0, metadata);
  }

  /** Up to the exact limit: the largest body the server must take in and answer. */
  addLarge(): void {
    const length = this.#rng.chance(0.5) ? DEFAULT_MAX_MESSAGE_BYTES : this.#rng.int(64 << 10, DEFAULT_MAX_MESSAGE_BYTES);
    this.#request('large garbage envelope', this.#rng.bytes(length), BAD_ENVELOPE);
  }

  tail(): Tail {
    const rng = this.#rng;
    const roll = rng.int(0, 99);
    if (roll < 20) return { kind: 'end', bytes: new Uint8Array(0) };
    if (roll < 30) return { kind: 'reset', bytes: new Uint8Array(0) };
    if (roll < 45) {
      const whole = encodeRequest({ service: TASK_SERVICE, method: 'Wait', payload: this.#validPayload('Wait'), timeoutNano: 0 });
      const frame = rawFrame(whole.length, this.#streamId(), FrameType.Request, 0, whole);
      return { kind: 'cut', bytes: frame.subarray(0, rng.int(1, frame.length - 1)) };
    }
    if (roll < 65) {
      const length = rng.int(1, DEFAULT_MAX_MESSAGE_BYTES);
      return { kind: 'truncated', bytes: rawFrame(length, this.#streamId(), FrameType.Request, 0, rng.bytes(Math.min(length - 1, rng.int(0, 4096)))) };
    }
    if (roll < 76) {
      const streamId = rng.uint32();
      const length = rng.int(DEFAULT_MAX_MESSAGE_BYTES + 1, 0xffff_ffff);
      return { kind: 'oversized', streamId, bytes: rawFrame(length, streamId, rng.int(0, 3), this.#flags(), rng.bytes(rng.int(0, 8192))) };
    }
    if (roll < 80) {
      // An unknown method's answer names it: each answer is as long as its request.
      const method = String.fromCharCode(rng.int(0x61, 0x7a)).repeat(rng.int(256 << 10, 1 << 20));
      return { kind: 'unread', streamId: this.#streamId(), bytes: encodeRequest({ service: TASK_SERVICE, method, payload: new Uint8Array(0), timeoutNano: 0 }) };
    }
    const noise = rng.bytes(rng.int(1, 16 << 10));
    // Behind a plausible header the noise reaches the envelope decoder, not just the length check.
    const bytes = rng.chance(0.5) ? Uint8Array.from([...rawFrame(noise.length, this.#streamId(), FrameType.Request, 0, new Uint8Array(0)), ...noise]) : noise;
    return { kind: 'random', bytes };
  }
}

/** Random places to split the body at, so the server's decoder meets frames in pieces too. */
function splitPoints(rng: Rng, total: number): number[] {
  const points = new Set<number>();
  for (let n = rng.int(0, 6); n > 0 && total > 1; n--) points.add(rng.int(1, total - 1));
  return [...points].sort((a, b) => a - b);
}

const LARGE_FRAME_EVERY = 64;

/** The plan of every connection, from one seed. */
export function planConnections(seed: number, connections: number, framesPerConnection: readonly [number, number]): ConnectionPlan[] {
  const rng = new Rng(seed);
  const plans: ConnectionPlan[] = [];
  for (let index = 0; index < connections; index++) {
    const fuzzer = new ConnectionFuzzer(rng);
    for (let n = rng.int(...framesPerConnection); n > 0; n--) fuzzer.addRandom();
    // Few, as each is megabytes the shim's heap holds until V8 collects it, which would blur its memory figures.
    if (index % LARGE_FRAME_EVERY === LARGE_FRAME_EVERY - 1) fuzzer.addLarge();
    const total = fuzzer.frames.reduce((sum, f) => sum + f.bytes.length, 0);
    plans.push({ index, frames: fuzzer.frames, splits: splitPoints(rng, total), tail: fuzzer.tail() });
  }
  return plans;
}
