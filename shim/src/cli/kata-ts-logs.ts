// `kata-ts logs SANDBOX [--follow]`: a sandbox's shim log and its guest
// console (kernel, init and agent), from its VM folder, as `tail` shows
// several files: a header whenever the source changes.
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SHIM_LOG_FILE } from '../containerd/shim-log-file.js';
import { findVmRecord } from '../sandbox/vm-records.js';
import { configuredRunRoot } from './run-root.js';

export const LOGS_USAGE = '  logs SANDBOX [--follow] [--run-root DIR]                         a sandbox\'s shim log and guest console (kernel, init, agent)';

const POLL_MS = 250;

interface Source {
  label: string;
  path: string;
  offset: number;
}

/** What was added to the file since `offset`; nothing when it is gone. */
async function readFrom(source: Source): Promise<Buffer> {
  const file = await open(source.path, 'r').catch(() => undefined);
  if (!file) return Buffer.alloc(0);
  try {
    const { size } = await file.stat();
    if (size < source.offset) source.offset = 0; // rewritten: start again
    const chunk = Buffer.alloc(size - source.offset);
    if (chunk.length > 0) await file.read(chunk, 0, chunk.length, source.offset);
    source.offset = size;
    return chunk;
  } finally {
    await file.close();
  }
}

export async function logsCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { follow: { type: 'boolean', short: 'f', default: false }, 'run-root': { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } } });
  } catch (err) {
    process.stderr.write(`kata-ts logs: ${(err as Error).message}\n${LOGS_USAGE}\n`);
    return 2;
  }
  const [wanted, ...extra] = parsed.positionals;
  if (parsed.values.help || !wanted || extra.length > 0) {
    (parsed.values.help ? process.stdout : process.stderr).write(`usage:\n${LOGS_USAGE}\nSANDBOX: a container's or pod's id (id@namespace when ambiguous), or a job's job-… id\n`);
    return parsed.values.help ? 0 : 2;
  }
  const record = await findVmRecord(parsed.values['run-root'] ?? configuredRunRoot(), wanted).catch((err: Error) => err);
  if (record instanceof Error) {
    process.stderr.write(`kata-ts logs: ${record.message}\n`);
    return 1;
  }
  const sources: Source[] = [
    { label: 'shim', path: join(record.vmDir, SHIM_LOG_FILE), offset: 0 },
    { label: 'guest console (kernel, init, agent)', path: record.description.consoleLogPath, offset: 0 },
  ];
  if (!(await stat(sources[0]!.path).catch(() => undefined))) process.stdout.write(`(no shim log: ${record.name} is a job's, whose runner logs to its own stderr, or its shim predates shim.log)\n`);
  let last: Source | undefined;
  const show = async () => {
    for (const source of sources) {
      const chunk = await readFrom(source);
      if (chunk.length === 0) continue;
      if (last !== source) process.stdout.write(`${last ? '\n' : ''}==> ${source.label}: ${source.path} <==\n`);
      last = source;
      process.stdout.write(chunk);
    }
  };
  await show();
  if (!parsed.values.follow) return 0;
  // Until the sandbox is gone (its folder goes with its VM) or the reader stops us.
  let stopped = false;
  process.once('SIGINT', () => (stopped = true));
  while (!stopped && (await stat(record.vmDir).catch(() => undefined))) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    await show();
  }
  return 0;
}
