// The bytes of a protobuf field that no agent message defines: every message
// type decodes it (and skips it), so it makes any reply as large as wanted.
const UNKNOWN_FIELD = 1000;
const LENGTH_DELIMITED = 2;

/** The tag and length of an unknown bytes field; its payloadBytes follow. */
export function unknownFieldHeader(payloadBytes: number): Buffer {
  return Buffer.from([...varint(UNKNOWN_FIELD * 8 + LENGTH_DELIMITED), ...varint(payloadBytes)]);
}

function varint(n: number): number[] {
  const out: number[] = [];
  for (; n > 0x7f; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return out;
}
