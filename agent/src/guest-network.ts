// Puts the pod's interfaces into the network namespace of the container that
// holds the pod's network, as the host describes them: the guest NIC (found by
// its MAC) is moved there, renamed, given the host interface's MAC, MTU and
// addresses and brought up; then the routes. Runs the guest's own `ip` (busybox) through
// `nsenter`; every value is checked first and passed as an argument, never
// through a shell.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import type { NetworkInterface, Route } from '../../proto/gen/agent.js';
import { failedPrecondition, invalidArgument } from './errors.js';

const run = promisify(execFile);
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const SYS_NET = '/sys/class/net';

async function ip(pid: number | undefined, args: string[]): Promise<void> {
  const argv = pid === undefined ? ['ip', ...args] : ['nsenter', '-t', String(pid), '-n', 'ip', ...args];
  try {
    await run(argv[0]!, argv.slice(1), { timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw failedPrecondition(`${argv.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

function checkInterface(nic: NetworkInterface): void {
  if (!IFNAME.test(nic.name)) throw invalidArgument(`interface name ${JSON.stringify(nic.name)} is not valid`);
  if (!MAC.test(nic.mac.toLowerCase())) throw invalidArgument(`interface ${nic.name}: MAC ${JSON.stringify(nic.mac)} is not valid`);
  if (nic.mtu < 68 || nic.mtu > 65535) throw invalidArgument(`interface ${nic.name}: MTU ${nic.mtu} is out of range`);
  for (const a of nic.addresses) {
    if (isIP(a.address) !== a.family) throw invalidArgument(`interface ${nic.name}: ${JSON.stringify(a.address)} is not an IPv${a.family} address`);
    if (a.prefixLength > (a.family === 4 ? 32 : 128)) throw invalidArgument(`interface ${nic.name}: prefix /${a.prefixLength} is out of range`);
  }
}

function checkRoute(r: Route): void {
  if (r.family !== 4 && r.family !== 6) throw invalidArgument(`route ${r.destination}: family ${r.family} is neither 4 nor 6`);
  const [net, prefix] = r.destination.split('/');
  if (r.destination !== 'default' && (isIP(net ?? '') !== r.family || (prefix !== undefined && !/^\d{1,3}$/.test(prefix))))
    throw invalidArgument(`route destination ${JSON.stringify(r.destination)} is not valid`);
  if (r.gateway && isIP(r.gateway) !== r.family) throw invalidArgument(`route ${r.destination}: gateway ${JSON.stringify(r.gateway)} is not valid`);
  if (!IFNAME.test(r.device)) throw invalidArgument(`route ${r.destination}: device ${JSON.stringify(r.device)} is not valid`);
  if (r.scope !== '' && r.scope !== 'link') throw invalidArgument(`route ${r.destination}: scope ${JSON.stringify(r.scope)} is not link or empty`);
}

/** The NICs in the agent's own namespace, by MAC (lower case). */
export async function guestNicsByMac(): Promise<Map<string, string>> {
  const nics = new Map<string, string>();
  for (const name of await readdir(SYS_NET)) nics.set((await readFile(`${SYS_NET}/${name}/address`, 'utf8').catch(() => '')).trim(), name);
  return nics;
}

/** The guest NIC (in the agent's own namespace) with this MAC, if it is still there. */
async function nicByMac(mac: string): Promise<string | undefined> {
  return (await guestNicsByMac()).get(mac.toLowerCase());
}

/** Moves the NIC into the namespace of process `pid` and configures it there. */
export async function updateInterface(pid: number, nic: NetworkInterface): Promise<void> {
  checkInterface(nic);
  if (nic.deviceMac && !MAC.test(nic.deviceMac.toLowerCase())) throw invalidArgument(`interface ${nic.name}: device MAC ${JSON.stringify(nic.deviceMac)} is not valid`);
  const guestName = await nicByMac(nic.deviceMac || nic.mac);
  if (guestName !== undefined) {
    await ip(undefined, ['link', 'set', 'dev', guestName, 'down']);
    await ip(undefined, ['link', 'set', 'dev', guestName, 'netns', String(pid)]);
    if (guestName !== nic.name) await ip(pid, ['link', 'set', 'dev', guestName, 'name', nic.name]);
  }
  // Already moved (the host configures again): the same steps leave it as described.
  await ip(pid, ['link', 'set', 'dev', nic.name, 'address', nic.mac.toLowerCase(), 'mtu', String(nic.mtu)]).catch(() => {
    throw failedPrecondition(`no guest network interface with MAC ${nic.deviceMac || nic.mac} for ${nic.name}`);
  });
  await ip(pid, ['address', 'flush', 'dev', nic.name]);
  for (const a of nic.addresses) await ip(pid, [`-${a.family}`, 'address', 'add', `${a.address}/${a.prefixLength}`, 'dev', nic.name]);
  await ip(pid, ['link', 'set', 'dev', nic.name, 'up']);
}

/** Replaces the routes of the namespace of process `pid` with these: on-link ones first, so gateways resolve. */
export async function updateRoutes(pid: number, routes: readonly Route[]): Promise<void> {
  for (const r of routes) checkRoute(r);
  const ordered = [...routes].sort((a, b) => Number(a.gateway !== '') - Number(b.gateway !== ''));
  for (const r of ordered) {
    const via = r.gateway ? ['via', r.gateway] : [];
    const scope = r.scope ? ['scope', r.scope] : [];
    await ip(pid, [`-${r.family}`, 'route', 'replace', r.destination, ...via, 'dev', r.device, ...scope]);
  }
}
