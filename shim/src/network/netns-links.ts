// What CNI put in a pod's network namespace: its interfaces (name, MAC, MTU,
// addresses) and routes, read with iproute2's JSON output. Parsing is pure;
// reading runs `ip` inside the namespace.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface IpAddress {
  family: 4 | 6;
  address: string;
  prefixLength: number;
}

export interface NetInterface {
  name: string;
  mac: string;
  mtu: number;
  addresses: IpAddress[];
}

export interface NetRoute {
  family: 4 | 6;
  /** A CIDR, or "default". */
  destination: string;
  /** Empty for an on-link route. */
  gateway: string;
  device: string;
  /** "link" for a route without a gateway, else "" (universe). */
  scope: string;
}

interface IpAddrJson {
  ifname: string;
  address?: string;
  mtu: number;
  link_type?: string;
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
}

interface IpRouteJson {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  type?: string;
}

/** Our own taps (tc-mirror.ts names them): never a pod interface, even while one is being torn down. */
const OWN_TAP = /^tap\d+_kt$/;

/** The interfaces a pod uses: Ethernet ones with their global addresses (loopback, link-local and our taps left out). */
export function parseInterfaces(json: string): NetInterface[] {
  return (JSON.parse(json) as IpAddrJson[])
    .filter((l) => l.link_type === 'ether' && l.address && !OWN_TAP.test(l.ifname))
    .map((l) => ({
      name: l.ifname,
      mac: l.address!,
      mtu: l.mtu,
      addresses: (l.addr_info ?? [])
        .filter((a) => (a.family === 'inet' || a.family === 'inet6') && a.scope !== 'link' && a.scope !== 'host')
        .map((a) => ({ family: a.family === 'inet' ? 4 : 6, address: a.local, prefixLength: a.prefixlen }) as IpAddress),
    }));
}

/**
 * The routes to carry over: the ones CNI added. The kernel's own routes for each address
 * (`proto kernel`) come back by themselves when the guest gets the address; other route types
 * (local, broadcast, multicast) are not CNI's.
 */
export function parseRoutes(json: string, family: 4 | 6, devices: ReadonlySet<string>): NetRoute[] {
  return (JSON.parse(json) as IpRouteJson[])
    .filter((r) => r.protocol !== 'kernel' && (r.type === undefined || r.type === 'unicast') && r.dev !== undefined && devices.has(r.dev))
    .filter((r) => !(family === 6 && r.dst.startsWith('fe80:')))
    .map((r) => ({ family, destination: r.dst, gateway: r.gateway ?? '', device: r.dev!, scope: r.gateway ? '' : (r.scope ?? 'link') }));
}

/** Runs a command inside the network namespace at netnsPath. */
export async function inNetns(netnsPath: string, argv: string[]): Promise<string> {
  try {
    return (await run('nsenter', [`--net=${netnsPath}`, ...argv], { timeout: 10_000 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`in network namespace ${netnsPath}: ${argv.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

export async function readNetns(netnsPath: string): Promise<{ interfaces: NetInterface[]; routes: NetRoute[] }> {
  const interfaces = parseInterfaces(await inNetns(netnsPath, ['ip', '-j', 'address', 'show']));
  const devices = new Set(interfaces.map((i) => i.name));
  const routes = [
    ...parseRoutes(await inNetns(netnsPath, ['ip', '-j', '-4', 'route', 'show']), 4, devices),
    ...parseRoutes(await inNetns(netnsPath, ['ip', '-j', '-6', 'route', 'show']), 6, devices),
  ];
  return { interfaces, routes };
}
