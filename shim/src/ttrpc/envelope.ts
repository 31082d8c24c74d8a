// The ttrpc Request/Response envelopes (proto/ttrpc.proto), converted to and
// from plain shapes so the rest of this folder never sees protobufjs quirks
// such as int64 fields decoding as Long objects.
import { ttrpc } from '../../../proto/gen/containerd/containerd.js';
import { Code, type WireStatus } from './status.js';

/** Request metadata: a key may repeat on the wire, so each maps to a list. */
export type Metadata = ReadonlyMap<string, readonly string[]>;

/** Metadata as callers write it. */
export type MetadataInit = Record<string, string | readonly string[]>;

export interface RequestEnvelope {
  service: string;
  method: string;
  payload: Uint8Array;
  /** Relative deadline in nanoseconds; 0 means none. */
  timeoutNano: number;
  metadata: Metadata;
}

export interface ResponseEnvelope {
  status: WireStatus;
  payload: Uint8Array;
}

/** protobufjs hands int64 back as a number or a Long, depending on whether the `long` package loaded. */
export function int64ToNumber(value: number | { toNumber(): number } | bigint | null | undefined): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  return value.toNumber();
}

function metadataFromPairs(pairs: readonly ttrpc.KeyValue.$Properties[]): Metadata {
  const map = new Map<string, string[]>();
  for (const { key, value } of pairs) {
    const k = key ?? '';
    const list = map.get(k) ?? [];
    list.push(value ?? '');
    map.set(k, list);
  }
  return map;
}

function pairsFromMetadata(metadata: MetadataInit | undefined): ttrpc.KeyValue.$Properties[] {
  const pairs: ttrpc.KeyValue.$Properties[] = [];
  for (const [key, value] of Object.entries(metadata ?? {})) {
    for (const v of typeof value === 'string' ? [value] : value) pairs.push({ key, value: v });
  }
  return pairs;
}

/** Throws (a protobufjs error) on bytes that are not a Request. */
export function decodeRequest(bytes: Uint8Array): RequestEnvelope {
  const req = ttrpc.Request.decode(bytes);
  return {
    service: req.service,
    method: req.method,
    payload: req.payload,
    timeoutNano: int64ToNumber(req.timeoutNano as unknown as number | { toNumber(): number }),
    metadata: metadataFromPairs(req.metadata),
  };
}

export function encodeRequest(req: Omit<RequestEnvelope, 'metadata'> & { metadata?: MetadataInit }): Uint8Array {
  return ttrpc.Request.encode({
    service: req.service,
    method: req.method,
    payload: req.payload,
    timeoutNano: req.timeoutNano,
    metadata: pairsFromMetadata(req.metadata),
  }).finish();
}

/** A missing status counts as OK: containerd answers some calls with a zero-length body. */
export function decodeResponse(bytes: Uint8Array): ResponseEnvelope {
  const res = ttrpc.Response.decode(bytes);
  const status = { code: res.status?.code ?? Code.OK, message: res.status?.message ?? '' };
  return { status, payload: status.code === Code.OK ? res.payload : new Uint8Array(0) };
}

export function encodeResponse(res: ResponseEnvelope): Uint8Array {
  return ttrpc.Response.encode({ status: { code: res.status.code, message: res.status.message }, payload: res.payload }).finish();
}
