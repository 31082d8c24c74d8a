// gRPC status codes as ttrpc carries them in google.rpc.Status, and the one
// error class that crosses the wire with a precise code. containerd acts on
// the class (a NotFound from Delete means "already gone"), so handlers throw
// TtrpcError with the right code instead of a plain Error.

export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type Code = (typeof Code)[keyof typeof Code];

const NAMES = new Map<number, string>(Object.entries(Code).map(([name, code]) => [code, name]));

/** "NOT_FOUND" for 5; the number itself for a code outside the table. */
export function codeName(code: number): string {
  return NAMES.get(code) ?? String(code);
}

/** An error with a gRPC status code: thrown by handlers, and by the client for a non-OK response. */
export class TtrpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TtrpcError';
  }
}

export interface WireStatus {
  code: number;
  message: string;
}

/** The status a failed call answers with: a TtrpcError keeps its code, anything else is UNKNOWN. */
export function statusFromError(err: unknown): WireStatus {
  if (err instanceof TtrpcError) return { code: err.code, message: err.message };
  if (err instanceof Error) return { code: Code.UNKNOWN, message: err.message };
  return { code: Code.UNKNOWN, message: String(err) };
}
