// Kubernetes pods through containerd's CRI plugin, driven by our CRI client as
// kubelet drives it: the kata-ts RuntimeClass handler, with runc in the same
// run as the baseline. Every check runs against both; a pod is one VM with
// kata-ts, and what its containers share must behave as it does with runc.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CriClient, type ContainerConfig, type PodSandboxConfig } from '../../shim/src/cri/client.js';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, PAUSE_IMAGE_TAR, PrivateContainerd } from '../helpers/containerd.js';
import { eventually, leftovers } from '../helpers/host-state.js';

const CGROUP_PARENT = '/kata-ts-cri-test';
let seq = 0;

/** A kubelet-like pod: its own log folder, volumes on the host, and the pod's containers. */
class PodFixture {
  readonly uid = `uid-${process.pid}-${++seq}`;
  readonly dir: string;
  readonly config: PodSandboxConfig;
  id = '';

  constructor(
    readonly cri: CriClient,
    readonly handler: string,
    extra: Partial<PodSandboxConfig> = {},
    shareProcesses = false,
  ) {
    this.dir = mkdtempSync('/tmp/kcri-pod-');
    mkdirSync(join(this.dir, 'logs'));
    this.config = {
      metadata: { name: `pod-${seq}`, uid: this.uid, namespace: 'e2e', attempt: 0 },
      hostname: `pod-${seq}-host`,
      logDirectory: join(this.dir, 'logs'),
      dnsConfig: { servers: ['10.0.0.10'], searches: ['e2e.svc.cluster.local'], options: ['ndots:5'] },
      linux: {
        cgroupParent: CGROUP_PARENT,
        sysctls: { 'kernel.shm_rmid_forced': '1' },
        securityContext: { namespaceOptions: { network: 'POD', pid: shareProcesses ? 'POD' : 'CONTAINER', ipc: 'POD' } },
      },
      ...extra,
    };
  }

  async run(): Promise<this> {
    this.id = await this.cri.runPodSandbox(this.config, this.handler);
    return this;
  }

  /** Creates and starts a busybox container in the pod. */
  async container(name: string, command: string[], extra: Partial<ContainerConfig> = {}): Promise<string> {
    const pid = (this.config.linux as { securityContext: { namespaceOptions: { pid: string } } }).securityContext.namespaceOptions.pid;
    const config: ContainerConfig = {
      metadata: { name, attempt: 0 },
      image: { image: BUSYBOX_IMAGE },
      command,
      logPath: `${name}.log`,
      linux: { securityContext: { namespaceOptions: { network: 'POD', pid, ipc: 'POD' } } },
      ...extra,
    };
    const id = await this.cri.createContainer(this.id, config, this.config);
    await this.cri.startContainer(id);
    return id;
  }

  async sh(containerId: string, script: string): Promise<{ out: string; err: string; code: number }> {
    const r = await this.cri.execSync(containerId, ['sh', '-c', script], 60);
    return { out: r.stdout.toString(), err: r.stderr.toString(), code: r.exitCode };
  }

  async remove(): Promise<void> {
    if (this.id) {
      await this.cri.stopPodSandbox(this.id);
      await this.cri.removePodSandbox(this.id);
    }
    execFileSync('sh', ['-c', `grep " ${this.dir}" /proc/self/mountinfo | cut -d" " -f5 | sort -r | xargs -r -n1 umount -l`]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The CRI log format: `<RFC3339Nano> <stream> <P|F> <text>`, one line each. */
function parseCriLog(text: string): { stream: string; text: string }[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [, stream, , ...rest] = line.split(' ');
      return { stream: stream!, text: rest.join(' ') };
    });
}

describe('CRI pods', () => {
  let ctrd: PrivateContainerd;
  let cri: CriClient;

  beforeAll(async () => {
    ctrd = await PrivateContainerd.start({ cri: true, namespace: 'k8s.io' });
    await ctrd.importImage(PAUSE_IMAGE_TAR);
    await ctrd.importImage(BUSYBOX_IMAGE_TAR);
    cri = CriClient.connect(ctrd.address);
    await eventually(async () => (await cri.version().catch(() => undefined)) !== undefined, 30_000);
  }, 60_000);

  afterAll(async () => {
    cri?.close();
    await ctrd?.stop();
    // runc's cgroupfs parents outlive their pods (kata-ts makes none on the host).
    execFileSync('sh', ['-c', `for d in /sys/fs/cgroup/*${CGROUP_PARENT} /sys/fs/cgroup/*/*${CGROUP_PARENT}; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + ; done; true`]);
  });

  describe.each(['runc', 'kata-ts'])('with the %s handler', (handler) => {
    it('runs a pod whose containers share /dev/shm, IPC, UTS and the network, with the pod’s hostname, hosts, DNS and sysctls', async () => {
      const pod = await new PodFixture(cri, handler).run();
      try {
        const a = await pod.container('a', ['sleep', '600']);
        const b = await pod.container('b', ['sleep', '600']);
        expect((await pod.sh(a, 'echo from-a > /dev/shm/note; touch /dev/mqueue/from-a; echo ok')).out).toBe('ok\n');
        expect((await pod.sh(b, 'cat /dev/shm/note')).out).toBe('from-a\n');
        // One IPC namespace: b sees the POSIX message queue a made.
        expect((await pod.sh(b, 'ls /dev/mqueue')).out).toBe('from-a\n');
        expect((await pod.sh(b, 'hostname')).out).toBe(`${pod.config.hostname}\n`);
        expect((await pod.sh(a, 'cat /etc/hostname')).out.trim()).toBe(pod.config.hostname);
        expect((await pod.sh(a, 'cat /etc/hosts')).out).toContain('localhost');
        const resolv = (await pod.sh(a, 'cat /etc/resolv.conf')).out;
        expect(resolv).toContain('nameserver 10.0.0.10');
        expect(resolv).toContain('search e2e.svc.cluster.local');
        expect((await pod.sh(a, 'cat /proc/sys/kernel/shm_rmid_forced')).out).toBe('1\n');
        // One network namespace: a listener in a is reachable from b on loopback.
        await pod.sh(a, '(echo pong | nc -l -p 7070 >/dev/null 2>&1 &) ; sleep 0.3');
        expect((await pod.sh(b, 'echo ping | nc 127.0.0.1 7070')).out).toBe('pong\n');
        // Without a shared PID namespace each container sees only itself.
        expect((await pod.sh(b, 'ps -o comm= | grep -c sleep')).out.trim()).toBe('1');
        expect((await pod.sh(a, 'echo out; echo err >&2; exit 3')).code).toBe(3);
        const r = await pod.sh(a, 'echo out; echo err >&2; exit 3');
        expect([r.out, r.err]).toEqual(['out\n', 'err\n']);
      } finally {
        await pod.remove();
      }
    });
  });

  afterAll(async () => {
    await eventually(() => leftovers().length === 0, 20_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
  });
});

// Kept for the volume tests below.
export { readFileSync, renameSync, symlinkSync, writeFileSync, parseCriLog };
