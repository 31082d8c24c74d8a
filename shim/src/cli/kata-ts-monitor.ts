// `kata-ts monitor`: serves the metrics of every sandbox on this host over
// HTTP for Prometheus, until SIGINT or SIGTERM.
import { parseArgs } from 'node:util';
import { createLogger } from '../../../common/log.js';
import { configuredRunRoot } from './run-root.js';

export const MONITOR_USAGE = `  monitor --listen ADDR [--run-root DIR] [--shim-timeout MS]       serve every sandbox's metrics over HTTP for Prometheus (ADDR: HOST:PORT)`;

const DEFAULT_SHIM_TIMEOUT_MS = 3000;

export async function monitorCommand(argv: string[]): Promise<number> {
  // prom-client is loaded only by the command that serves.
  const { HostMonitor, MonitorServer, parseListenAddress } = await import('../metrics/host-monitor.js');
  let values;
  let address;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { listen: { type: 'string' }, 'run-root': { type: 'string' }, 'shim-timeout': { type: 'string', default: String(DEFAULT_SHIM_TIMEOUT_MS) } },
    }));
    if (!values.listen) throw new Error('--listen ADDR is needed');
    address = parseListenAddress(values.listen);
  } catch (err) {
    process.stderr.write(`kata-ts monitor: ${(err as Error).message}\n${MONITOR_USAGE}\n`);
    return 2;
  }
  const shimTimeoutMs = Number(values['shim-timeout']);
  if (!Number.isInteger(shimTimeoutMs) || shimTimeoutMs <= 0) {
    process.stderr.write(`kata-ts monitor: --shim-timeout ${values['shim-timeout']} is not a positive number of milliseconds\n`);
    return 2;
  }
  const runRoot = values['run-root'] ?? configuredRunRoot();
  const log = createLogger({ level: 'info', write: (line) => void process.stderr.write(`${line}\n`), fields: { component: 'monitor' } });
  const server = await MonitorServer.listen(address, new HostMonitor({ runRoot, shimTimeoutMs, log }), log);
  const { address: host, port, family } = server.address;
  // On stdout alone, so a script that asked for port 0 learns the port.
  process.stdout.write(`kata-ts monitor: serving http://${family === 'IPv6' ? `[${host}]` : host}:${port}/metrics for the sandboxes in ${runRoot}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
  return 0;
}
