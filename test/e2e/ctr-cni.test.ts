// `ctr run --cni`: ctr creates the task, runs CNI on the network namespace of
// the task's pid, then starts it. kata-ts beside runc in the same run, on the
// test's own bridge; ctr sees a private /etc/cni/net.d (see ctrCommand).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, PrivateContainerd, type CtrCniDirs } from '../helpers/containerd.js';
import { eventually, leftovers } from '../helpers/host-state.js';

const BRIDGE = 'ktctr0';
const NETWORK = 'kata-ts-ctr';
const GATEWAY = '10.89.0.1';
const RUNTIMES = { runc: 'io.containerd.runc.v2', 'kata-ts': 'io.containerd.kata-ts.v2' } as const;
let seq = 0;
const newId = () => `ktcni-${process.pid}-${++seq}`;

describe('ctr run --cni', () => {
  let ctrd: PrivateContainerd;
  let dir: string;
  let cni: CtrCniDirs;
  const ipamDir = () => join(dir, 'ipam', NETWORK);
  /** Addresses host-local still holds (it keeps a file per address, beside its own bookkeeping). */
  const leasedAddresses = () => readdirSync(ipamDir(), { withFileTypes: true }).filter((e) => /^\d+\.\d+\.\d+\.\d+$/.test(e.name)).map((e) => e.name);
  const bridgePorts = () => execFileSync('ip', ['-o', 'link', 'show', 'master', BRIDGE]).toString().trim();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kata-ts-ctr-cni-'));
    cni = { confDir: join(dir, 'net.d'), workDir: join(dir, 'overlay') };
    mkdirSync(cni.confDir);
    mkdirSync(cni.workDir);
    const conf = {
      cniVersion: '1.0.0',
      name: NETWORK,
      plugins: [
        {
          type: 'bridge',
          bridge: BRIDGE,
          isGateway: true,
          ipMasq: false,
          ipam: { type: 'host-local', ranges: [[{ subnet: '10.89.0.0/24', gateway: GATEWAY }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(dir, 'ipam') },
        },
      ],
    };
    writeFileSync(join(cni.confDir, '10-kata-ts-ctr.conflist'), JSON.stringify(conf));
    ctrd = await PrivateContainerd.start();
    await ctrd.importImage(BUSYBOX_IMAGE_TAR);
  });
  afterAll(async () => {
    await ctrd?.stop();
    execFileSync('sh', ['-c', `ip link del ${BRIDGE} 2>/dev/null || true`]);
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await eventually(() => leftovers().length === 0, 15_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
  });

  describe.each(Object.keys(RUNTIMES) as (keyof typeof RUNTIMES)[])('with %s', (runtime) => {
    const run = (args: string[]) => ctrd.ctr(['run', '--rm', '--cni', '--runtime', RUNTIMES[runtime], ...args], { cni });

    it("has CNI's interface, address and default route from its first instruction, and reaches the gateway", async () => {
      const r = await run([BUSYBOX_IMAGE, newId(), 'sh', '-c', `cat /sys/class/net/eth0/mtu; ip -o -4 addr show eth0; ip route; ping -c 1 -W 10 ${GATEWAY} >/dev/null && echo gateway answers`]);
      expect(r.stderr).toBe('');
      const out = r.stdout.toString();
      expect(out).toMatch(/^1500\n/);
      expect(out).toMatch(/eth0\s+inet 10\.89\.0\.\d+\/24/);
      expect(out).toMatch(/default via 10\.89\.0\.1 dev eth0/);
      expect(out).toContain('gateway answers\n');
      expect(r.code).toBe(0);
      // ctr's CNI DEL after the exit gave the address back, and the veth went with the namespace.
      expect(leasedAddresses()).toEqual([]);
      await eventually(() => bridgePorts() === '', 10_000);
    });

    it('answers on its address from the host', async () => {
      const id = newId();
      const running = run([BUSYBOX_IMAGE, id, 'sh', '-c', `mkdir /www && echo "hello from ${id}" > /www/index.html && exec httpd -f -p 8080 -h /www`]);
      try {
        let ip = '';
        await eventually(async () => {
          const r = await ctrd.ctr(['task', 'exec', '--exec-id', `ip${seq}`, id, 'ip', '-o', '-4', 'addr', 'show', 'eth0']);
          ip = /inet (10\.89\.0\.\d+)\//.exec(r.stdout.toString())?.[1] ?? '';
          return ip !== '';
        }, 60_000);
        let body = '';
        await eventually(async () => {
          body = await fetch(`http://${ip}:8080/`, { signal: AbortSignal.timeout(5_000) }).then((r) => r.text(), () => '');
          return body !== '';
        }, 30_000);
        expect(body).toBe(`hello from ${id}\n`);
      } finally {
        await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
      }
      expect((await running).code).toBe(137);
      expect(leasedAddresses()).toEqual([]);
    });
  });
});
