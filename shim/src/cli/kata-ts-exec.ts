// `kata-ts exec SANDBOX [-- COMMAND …]`: the debug console. Runs a shell (or
// the command) in the sandbox's guest outside every container, on a terminal,
// through the sandbox's shim; only where the configuration enables it
// (agent.debug_console_enabled). Exits with the command's status, or 125 when
// the console could not run at all.
import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { DEFAULT_COMMAND, FORWARDED_ENV } from '../debug-console/console-request.js';
import { DebugConsoleError, runDebugConsole } from '../debug-console/console-client.js';
import { monitorSocketPath } from '../metrics/shim-endpoint.js';
import { findVmRecord } from '../sandbox/vm-records.js';
import { configuredRunRoot } from './run-root.js';

export const EXEC_USAGE = '  exec SANDBOX [--run-root DIR] [-- COMMAND …]                     a shell or COMMAND in the guest outside every container (debug console)';

/** What `docker run` and `podman exec` use when they themselves failed, so scripts can tell it from the command's own status. */
const CANNOT_RUN = 125;

function terminalSize(): { rows: number; columns: number } {
  return process.stdout.isTTY ? { rows: process.stdout.rows, columns: process.stdout.columns } : { rows: 24, columns: 80 };
}

export async function execCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { 'run-root': { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } } });
  } catch (err) {
    process.stderr.write(`kata-ts exec: ${(err as Error).message}\n${EXEC_USAGE}\n`);
    return 2;
  }
  const [wanted, ...command] = parsed.positionals;
  if (parsed.values.help || !wanted) {
    (parsed.values.help ? process.stdout : process.stderr).write(
      `usage:\n${EXEC_USAGE}\nSANDBOX: a container's or pod's id (id@namespace when ambiguous). Needs debug_console_enabled = true in the [agent] section of the configuration.\n`,
    );
    return parsed.values.help ? 0 : 2;
  }
  const runRoot = parsed.values['run-root'] ?? configuredRunRoot();
  const fail = (message: string) => {
    process.stderr.write(`kata-ts exec: ${message}\n`);
    return CANNOT_RUN;
  };
  const record = await findVmRecord(runRoot, wanted).catch((err: Error) => err);
  if (record instanceof Error) return fail(record.message);
  const socketPath = monitorSocketPath(record.vmDir);
  if (!(await stat(socketPath).catch(() => undefined))?.isSocket())
    return fail(`sandbox ${record.name} has no shim endpoint at ${socketPath} (a job's VM has none; a sandbox still starting has none yet)`);

  const stdin = process.stdin;
  const raw = stdin.isTTY === true;
  // The guest's terminal does the echo and the line editing; ours passes every key through.
  if (raw) stdin.setRawMode(true);
  try {
    return await runDebugConsole(
      socketPath,
      {
        command: command.length > 0 ? command : DEFAULT_COMMAND,
        env: FORWARDED_ENV.filter((name) => process.env[name]).map((name) => `${name}=${process.env[name]}`),
        ...terminalSize(),
      },
      {
        input: stdin,
        output: process.stdout,
        onResize: process.stdout.isTTY
          ? (listener) => {
              const onResize = () => listener(process.stdout.rows, process.stdout.columns);
              process.stdout.on('resize', onResize);
              return () => process.stdout.off('resize', onResize);
            }
          : undefined,
      },
    );
  } catch (err) {
    if (err instanceof DebugConsoleError) return fail(err.message);
    throw err;
  } finally {
    if (raw) stdin.setRawMode(false);
  }
}
