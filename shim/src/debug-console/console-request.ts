// What `kata-ts exec` asks a shim for: an HTTP upgrade of a connection to the
// shim's endpoint, with the command and the terminal in one JSON header.

export const DEBUG_CONSOLE_PATH = '/debug-console';
/** The Upgrade token, and the name of the header that carries the request. */
export const DEBUG_CONSOLE_PROTOCOL = 'kata-ts-debug-console';

/** busybox's shell, in every guest image. */
export const DEFAULT_COMMAND = ['/bin/sh'];
const MAX_ARGS = 4096;
const MAX_HEADER_BYTES = 64 * 1024;
/** The operator's terminal settings worth carrying into the guest. */
export const FORWARDED_ENV = ['TERM', 'LANG', 'LC_ALL'];

export interface ConsoleRequest {
  /** The program and its arguments; the guest's PATH finds the program. */
  command: string[];
  /** NAME=value entries added to the guest's environment. */
  env: string[];
  rows: number;
  columns: number;
}

export class ConsoleRequestError extends Error {
  constructor(message: string) {
    super(`debug console request: ${message}`);
    this.name = 'ConsoleRequestError';
  }
}

const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((e) => typeof e === 'string');
const isSize = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff;

export function encodeConsoleRequest(request: ConsoleRequest): string {
  return JSON.stringify(request);
}

/** The request in the header's value; every field checked, so a bad one is named. */
export function parseConsoleRequest(header: string | string[] | undefined): ConsoleRequest {
  if (typeof header !== 'string' || header === '') throw new ConsoleRequestError(`no ${DEBUG_CONSOLE_PROTOCOL} header`);
  if (header.length > MAX_HEADER_BYTES) throw new ConsoleRequestError(`the ${DEBUG_CONSOLE_PROTOCOL} header is over ${MAX_HEADER_BYTES} bytes`);
  let value: Partial<Record<keyof ConsoleRequest, unknown>>;
  try {
    value = JSON.parse(header) as typeof value;
  } catch (err) {
    throw new ConsoleRequestError(`the ${DEBUG_CONSOLE_PROTOCOL} header is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null) throw new ConsoleRequestError('not a JSON object');
  const command = value.command ?? DEFAULT_COMMAND;
  if (!isStringList(command) || command.length === 0 || command[0] === '' || command.length > MAX_ARGS)
    throw new ConsoleRequestError('command must be a list of strings whose first names a program');
  const env = value.env ?? [];
  if (!isStringList(env) || env.some((e) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(e))) throw new ConsoleRequestError('env must be a list of NAME=value strings');
  const rows = value.rows ?? 0;
  const columns = value.columns ?? 0;
  if (!isSize(rows) || !isSize(columns)) throw new ConsoleRequestError('rows and columns must be whole numbers from 0 to 65535');
  return { command, env, rows, columns };
}
