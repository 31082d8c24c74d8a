// `kata-ts ps`: the sandboxes on this host, from each shim's status endpoint.
import { parseArgs } from 'node:util';
import { psReport, renderPsTable, type Unreachable } from '../metrics/ps-report.js';
import { parseSandboxStatus, type SandboxStatus } from '../metrics/sandbox-status.js';
import { findShimSockets, getFromShim } from '../metrics/shim-sockets.js';
import { configuredRunRoot } from './run-root.js';

export const PS_USAGE = `  ps [--json] [--run-root DIR]                                     the sandboxes on this host: pod, containers, accel, boot timeline, host memory`;

/** Each shim answers within this, or is listed as unreachable. */
const SHIM_TIMEOUT_MS = 3000;

export async function psCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false }, 'run-root': { type: 'string' } } }));
  } catch (err) {
    process.stderr.write(`kata-ts ps: ${(err as Error).message}\n${PS_USAGE}\n`);
    return 2;
  }
  const runRoot = values['run-root'] ?? configuredRunRoot();
  const sockets = await findShimSockets(runRoot);
  const statuses: SandboxStatus[] = [];
  const unreachable: Unreachable[] = [];
  await Promise.all(
    sockets.map(async (s) => {
      try {
        statuses.push(parseSandboxStatus(await getFromShim(s.path, '/status', SHIM_TIMEOUT_MS)));
      } catch (err) {
        unreachable.push({ runFolder: s.runFolder, socket: s.path, error: (err as Error).message });
      }
    }),
  );
  const report = psReport(statuses, unreachable, new Date());
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderPsTable(report));
  return 0;
}
