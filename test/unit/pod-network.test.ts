import { describe, expect, it } from 'vitest';
import { parseInterfaces, parseRoutes } from '../../shim/src/network/netns-links.js';
import { mirrorCommands, tapName, unmirrorCommands } from '../../shim/src/network/tc-mirror.js';

// What `ip -j address show` and `ip -j route show` print in a CNI bridge pod's namespace.
const ADDR = JSON.stringify([
  { ifindex: 1, ifname: 'lo', mtu: 65536, link_type: 'loopback', address: '00:00:00:00:00:00', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }] },
  {
    ifindex: 3,
    ifname: 'eth0',
    mtu: 1500,
    link_type: 'ether',
    address: '16:c4:1a:2b:3c:4d',
    addr_info: [
      { family: 'inet', local: '10.88.0.7', prefixlen: 16, scope: 'global' },
      { family: 'inet6', local: 'fd00::7', prefixlen: 64, scope: 'global' },
      { family: 'inet6', local: 'fe80::14c4:1aff:fe2b:3c4d', prefixlen: 64, scope: 'link' },
    ],
  },
  { ifindex: 4, ifname: 'tap0_kt', mtu: 1500, link_type: 'ether', address: '0a:0b:0c:0d:0e:0f', addr_info: [] },
]);
const ROUTES4 = JSON.stringify([
  { dst: 'default', gateway: '10.88.0.1', dev: 'eth0', flags: [] },
  { dst: '10.88.0.0/16', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '10.88.0.7', flags: [] },
  { dst: '10.96.0.0/12', dev: 'eth0', scope: 'link', flags: [] },
]);
const ROUTES6 = JSON.stringify([
  { dst: 'fd00::/64', dev: 'eth0', protocol: 'kernel', metric: 256, flags: [] },
  { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel', metric: 256, flags: [] },
  { dst: 'default', gateway: 'fd00::1', dev: 'eth0', metric: 1024, flags: [] },
]);

describe('reading a pod network namespace', () => {
  it('takes Ethernet interfaces with their global addresses, not loopback, link-local or our taps', () => {
    const [eth0] = parseInterfaces(ADDR);
    expect(eth0).toEqual({
      name: 'eth0',
      mac: '16:c4:1a:2b:3c:4d',
      mtu: 1500,
      addresses: [
        { family: 4, address: '10.88.0.7', prefixLength: 16 },
        { family: 6, address: 'fd00::7', prefixLength: 64 },
      ],
    });
    // Our own tap, left from a sandbox being torn down in the same namespace, is not the pod's.
    expect(parseInterfaces(ADDR).map((i) => i.name)).toEqual(['eth0']);
  });

  it("takes CNI's routes, leaving the kernel's own to the guest kernel", () => {
    const devices = new Set(['eth0']);
    expect(parseRoutes(ROUTES4, 4, devices)).toEqual([
      { family: 4, destination: 'default', gateway: '10.88.0.1', device: 'eth0', scope: '' },
      { family: 4, destination: '10.96.0.0/12', gateway: '', device: 'eth0', scope: 'link' },
    ]);
    expect(parseRoutes(ROUTES6, 6, devices)).toEqual([{ family: 6, destination: 'default', gateway: 'fd00::1', device: 'eth0', scope: '' }]);
    expect(parseRoutes(ROUTES4, 4, new Set(['eth1']))).toEqual([]);
  });
});

describe('the tc mirror', () => {
  it('redirects every packet each way between the veth and its tap, and undoes it on the veth', () => {
    expect(tapName(0)).toBe('tap0_kt');
    const redirect = (from: string, to: string) => ['tc', 'filter', 'add', 'dev', from, 'parent', 'ffff:', 'protocol', 'all', 'u32', 'match', 'u8', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', to];
    expect(mirrorCommands('eth0', 'tap0_kt', 1450)).toEqual([
      ['ip', 'link', 'set', 'dev', 'tap0_kt', 'mtu', '1450', 'up'],
      ['tc', 'qdisc', 'add', 'dev', 'eth0', 'ingress'],
      redirect('eth0', 'tap0_kt'),
      ['tc', 'qdisc', 'add', 'dev', 'tap0_kt', 'ingress'],
      redirect('tap0_kt', 'eth0'),
    ]);
    expect(unmirrorCommands('eth0')).toEqual([['tc', 'qdisc', 'del', 'dev', 'eth0', 'ingress']]);
  });
});
