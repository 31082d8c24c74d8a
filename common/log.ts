// A small structured logger: one line per record, `key=value` pairs in the
// logfmt style containerd itself writes, so our lines blend into its log.

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

const LEVELS: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50 };

export interface Logger {
  trace(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
  enabled(level: LogLevel): boolean;
}

export interface LoggerOptions {
  level?: LogLevel;
  write?: (line: string) => void;
  fields?: LogFields;
  now?: () => Date;
}

function quote(value: string): string {
  return /^[A-Za-z0-9_.:/@+\-,]+$/.test(value) ? value : JSON.stringify(value);
}

function render(value: unknown): string {
  if (value instanceof Error) return quote(value.message);
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value === undefined || value === null) return '""';
  return quote(JSON.stringify(value));
}

/** Formats one record; exported for tests. */
export function formatRecord(time: Date, level: LogLevel, msg: string, fields: LogFields): string {
  let line = `time=${quote(time.toISOString())} level=${level} msg=${render(msg)}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    line += ` ${k}=${render(v)}`;
  }
  return line;
}

export function parseLogLevel(value: string | undefined, fallback: LogLevel): LogLevel {
  return value !== undefined && value in LEVELS ? (value as LogLevel) : fallback;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const threshold = LEVELS[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => void process.stderr.write(line + '\n'));
  const now = options.now ?? (() => new Date());
  const base = options.fields ?? {};
  const log = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    if (LEVELS[level] < threshold) return;
    write(formatRecord(now(), level, msg, { ...base, ...fields }));
  };
  return {
    trace: log('trace'),
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (fields) => createLogger({ ...options, fields: { ...base, ...fields } }),
    enabled: (level) => LEVELS[level] >= threshold,
  };
}
