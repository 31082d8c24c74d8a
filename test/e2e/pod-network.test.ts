// Pod networking through containerd's CRI plugin and the CNI bridge: the
// pod's CNI interface is carried into the kata-ts VM, so its IP answers as a
// runc pod's does. kata-ts beside runc in the same run; all traffic stays on
// this machine (the test's own bridge and 127.0.0.1).
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CriClient } from '../../shim/src/cri/client.js';
import { PodFixture, startCriContainerd, withPod } from '../helpers/cri-pod.js';
import { eventually, leftovers } from '../helpers/host-state.js';

const HTTPD = ['sh', '-c', 'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www'];

const get = async (url: string) => (await fetch(url, { signal: AbortSignal.timeout(10_000) })).text();

/** Writes `data` to host:port and closes; resolves once the peer has it all. */
function push(host: string, port: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => s.end(data));
    s.on('error', reject);
    s.on('close', (hadError) => (hadError ? reject(new Error('connection failed')) : resolve()));
  });
}

describe('pod networking', () => {
  let cri: CriClient;
  let stop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    ({ cri, stop } = await startCriContainerd());
  }, 60_000);

  afterAll(async () => {
    await stop?.();
  });

  afterEach(async () => {
    await eventually(() => leftovers().length === 0, 20_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
  });

  describe.each(['runc', 'kata-ts'])('with the %s handler', (handler) => {
    it("answers on the pod IP from the host, with the CNI interface's address, MAC and MTU in the pod", async () => {
      await withPod(new PodFixture(cri, handler), async (pod) => {
        const web = await pod.container('web', HTTPD);
        const ip = await pod.ip();
        await eventually(async () => (await get(`http://${ip}:8080/`).catch(() => '')) === `hello from ${pod.config.hostname}\n`, 30_000);
        // ip, not sysfs: /sys still shows the host's own namespace after nsenter --net.
        const hostLink = execFileSync('nsenter', [`--net=${await pod.netnsPath()}`, 'ip', '-o', 'link', 'show', 'eth0']).toString();
        const hostMac = /link\/ether ([0-9a-f:]{17})/.exec(hostLink)?.[1];
        const seen = (await pod.sh(web, 'cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu; ip -4 addr show eth0; ip route')).out;
        expect(seen).toContain(`${hostMac}\n1500\n`);
        expect(seen).toMatch(new RegExp(`inet ${ip.replaceAll('.', '\\.')}/16`));
        expect(seen).toMatch(/default via 10\.88\.0\.1 dev eth0/);
      });
    });

    it('reaches another pod by its IP, and takes 100 MB from the host byte for byte', async () => {
      await withPod(new PodFixture(cri, handler), async (server) => {
        await withPod(new PodFixture(cri, handler), async (client) => {
          await server.container('web', HTTPD);
          const sink = await server.container('sink', ['sh', '-c', 'nc -l -p 9000 | md5sum > /tmp/sum; sleep 600']);
          const c = await client.container('c', ['sleep', '600']);
          const serverIp = await server.ip();
          await eventually(async () => (await client.sh(c, `wget -qO- http://${serverIp}:8080/`)).out === `hello from ${server.config.hostname}\n`, 30_000);

          const data = randomBytes(100 * 1024 * 1024);
          await eventually(async () => (await push(serverIp, 9000, data).then(() => true, () => false)), 30_000);
          const expected = createHash('md5').update(data).digest('hex');
          await eventually(async () => (await server.sh(sink, 'cat /tmp/sum 2>/dev/null')).out.startsWith(expected), 120_000);
        });
      });
    });

    it('maps a hostPort on 127.0.0.1 to the pod through portmap', async () => {
      const port = 18080 + (handler === 'runc' ? 0 : 1);
      await withPod(new PodFixture(cri, handler, { portMappings: [{ protocol: 'TCP', containerPort: 8080, hostPort: port, hostIp: '127.0.0.1' }] }), async (pod) => {
        await pod.container('web', HTTPD);
        await eventually(async () => (await get(`http://127.0.0.1:${port}/`).catch(() => '')) === `hello from ${pod.config.hostname}\n`, 30_000);
      });
    });
  });

  it('leaves no tap device or qdisc behind once the pod is stopped', async () => {
    await withPod(new PodFixture(cri, 'kata-ts'), async (pod) => {
      const web = await pod.container('web', ['sleep', '600']);
      const netns = await pod.netnsPath();
      const links = execFileSync('nsenter', [`--net=${netns}`, 'ip', '-o', 'link', 'show']).toString();
      expect(links).toMatch(/tap0_kt/);
      expect(execFileSync('nsenter', [`--net=${netns}`, 'tc', 'qdisc', 'show', 'dev', 'eth0']).toString()).toMatch(/ingress/);
      await cri.stopContainer(web, 0);
      await cri.removeContainer(web);
      // StopPodSandbox stops the VM first, then CNI's DEL runs on a namespace with nothing of ours left.
      await cri.stopPodSandbox(pod.id);
      expect(execFileSync('ip', ['-o', 'link', 'show']).toString()).not.toMatch(/tap\d+_kt/);
    });
  });
});
