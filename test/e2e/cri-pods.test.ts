// Kubernetes pods through containerd's CRI plugin, driven by our CRI client as
// kubelet drives it: the kata-ts RuntimeClass handler, with runc in the same
// run as the baseline. Every check runs against both; a pod is one VM with
// kata-ts, and what its containers share must behave as it does with runc.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerConfig, CriClient } from '../../shim/src/cri/client.js';
import { runStream } from '../../shim/src/cri/stream.js';
import { parseCriLog, PodFixture, startCriContainerd, withPod } from '../helpers/cri-pod.js';
import { eventually, leftovers, sandboxProcesses } from '../helpers/host-state.js';

describe('CRI pods', () => {
  let cri: CriClient;
  let stop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    ({ cri, stop } = await startCriContainerd());
  }, 60_000);

  afterAll(async () => {
    await stop?.();
  });

  describe.each(['runc', 'kata-ts'])('with the %s handler', (handler) => {
    it('runs a pod whose containers share /dev/shm, IPC, UTS and the network, with the pod’s hostname, hosts, DNS and sysctls', async () => {
      await withPod(new PodFixture(cri, handler), async (pod) => {
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
        // The pod's /dev/shm is the size containerd made it on the host (64 MiB).
        expect((await pod.sh(b, "df -k /dev/shm | awk 'NR==2{print $2}'")).out).toBe('65536\n');
        // One network namespace: a listener in a is reachable from b on loopback.
        await pod.sh(a, '(echo pong | nc -l -p 7070 >/dev/null 2>&1 &) ; sleep 0.3');
        expect((await pod.sh(b, 'echo ping | nc 127.0.0.1 7070')).out).toBe('pong\n');
        // Without a shared PID namespace each container sees only itself.
        expect((await pod.sh(b, 'ps -o comm= | grep -c sleep')).out.trim()).toBe('1');
        expect((await pod.sh(a, 'echo out; echo err >&2; exit 3')).code).toBe(3);
        const r = await pod.sh(a, 'echo out; echo err >&2; exit 3');
        expect([r.out, r.err]).toEqual(['out\n', 'err\n']);
      });
    });

    it('shares the PID namespace when the pod asks: the pause process is PID 1 and each container sees the other', async () => {
      await withPod(new PodFixture(cri, handler, {}, true), async (pod) => {
        const a = await pod.container('a', ['sleep', '601']);
        const b = await pod.container('b', ['sleep', '602']);
        expect((await pod.sh(b, 'cat /proc/1/comm')).out).toBe('pause\n');
        const seen = (await pod.sh(a, 'ps -o args=')).out;
        expect(seen).toContain('sleep 601');
        expect(seen).toContain('sleep 602');
      });
    });

    it('mounts hostPath, emptyDir and configMap-style volumes: rw, ro, single files, shared, and updated in place', async () => {
      await withPod(new PodFixture(cri, handler), async (pod) => {
        const vol = (name: string) => join(pod.dir, 'volumes', name);
        for (const d of ['rw', 'ro', 'kubernetes.io~empty-dir/scratch', 'kubernetes.io~empty-dir/mem', 'config/..2026_01']) mkdirSync(vol(d), { recursive: true });
        writeFileSync(join(vol('ro'), 'motd'), 'read me\n');
        writeFileSync(join(vol('config/..2026_01'), 'greeting'), 'hello v1\n');
        symlinkSync('..2026_01', vol('config/..data'));
        symlinkSync('..data/greeting', vol('config/greeting'));
        writeFileSync(vol('app.conf'), 'key=value\n');
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', vol('kubernetes.io~empty-dir/mem')]);
        const mounts: ContainerConfig['mounts'] = [
          { containerPath: '/rw', hostPath: vol('rw') },
          { containerPath: '/ro', hostPath: vol('ro'), readonly: true },
          { containerPath: '/etc/app.conf', hostPath: vol('app.conf'), readonly: true },
          { containerPath: '/scratch', hostPath: vol('kubernetes.io~empty-dir/scratch') },
          { containerPath: '/mem', hostPath: vol('kubernetes.io~empty-dir/mem') },
          { containerPath: '/config', hostPath: vol('config'), readonly: true },
        ];
        const a = await pod.container('a', ['sleep', '600'], { mounts });
        const b = await pod.container('b', ['sleep', '600'], { mounts });

        expect((await pod.sh(a, 'echo written-in-a > /rw/out && cat /ro/motd /etc/app.conf /config/greeting')).out).toBe('read me\nkey=value\nhello v1\n');
        expect(readFileSync(join(vol('rw'), 'out'), 'utf8')).toBe('written-in-a\n');
        const refused = await pod.sh(a, 'echo x > /ro/new; echo x >> /etc/app.conf');
        expect(refused.code).not.toBe(0);
        expect(refused.err).toMatch(/Read-only file system/);
        // emptyDir on disk and in memory: one volume for both containers, the memory one sized as on the host.
        await pod.sh(a, 'echo disk > /scratch/f; echo memory > /mem/f');
        expect((await pod.sh(b, 'cat /scratch/f /mem/f')).out).toBe('disk\nmemory\n');
        expect((await pod.sh(b, "df -k /mem | awk 'NR==2{print $2}'")).out.trim()).toBe('8192');

        // kubelet updates a configMap by swapping the ..data symlink atomically.
        mkdirSync(vol('config/..2026_02'));
        writeFileSync(join(vol('config/..2026_02'), 'greeting'), 'hello v2\n');
        symlinkSync('..2026_02', vol('config/..data_tmp'));
        renameSync(vol('config/..data_tmp'), vol('config/..data'));
        const updatedAt = Date.now();
        await eventually(async () => (await pod.sh(b, 'cat /config/greeting')).out === 'hello v2\n', 10_000);
        expect(Date.now() - updatedAt).toBeLessThan(2_000 + 1_000); // within 2 s, plus one exec's round trip
      });
    });

    it('streams an exec with stdin, and attaches to a container that reads its stdin', async () => {
      await withPod(new PodFixture(cri, handler), async (pod) => {
        const a = await pod.container('a', ['sleep', '600']);
        const url = await cri.exec({ containerId: a, cmd: ['sh', '-c', 'read line; echo "got:$line"; echo to-stderr >&2; exit 4'], stdin: true });
        expect(await runStream(url, { stdin: 'hello\n', timeoutMs: 60_000 })).toEqual({
          stdout: Buffer.from('got:hello\n'),
          stderr: Buffer.from('to-stderr\n'),
          exitCode: 4,
        });
        const reader = await pod.container('reader', ['sh', '-c', 'read line; echo "attached:$line"'], { stdin: true, stdinOnce: true });
        const attached = await runStream(await cri.attach({ containerId: reader, stdin: true }), { stdin: 'hi\n', timeoutMs: 60_000 });
        expect(attached.stdout.toString()).toBe('attached:hi\n');
        await eventually(async () => (await cri.containerStatus(reader)).status.state === 'CONTAINER_EXITED', 30_000);
      });
    });

    it('keeps stdout and stderr apart and byte-exact in the CRI log, and reports stats', async () => {
      await withPod(new PodFixture(cri, handler), async (pod) => {
        // The process stays: with runc, containerd 1.6 can drop the tail of what a process wrote just before it exited.
        await pod.container('logger', ['sh', '-c', 'echo line1; echo err1 >&2; seq 1 20000; echo last; sleep 600']);
        const log = join(pod.config.logDirectory!, 'logger.log');
        await eventually(() => readFileSync(log, 'utf8').includes('stdout F last'), 10_000);
        const entries = parseCriLog(readFileSync(log, 'utf8'));
        const stdout = entries.filter((e) => e.stream === 'stdout').map((e) => e.text);
        expect(stdout).toEqual(['line1', ...Array.from({ length: 20000 }, (_, i) => String(i + 1)), 'last']);
        expect(entries.filter((e) => e.stream === 'stderr').map((e) => e.text)).toEqual(['err1']);

        const running = await pod.container('busy', ['sh', '-c', 'x=0; while [ $x -lt 3000 ]; do x=$((x+1)); done; sleep 600']);
        const stats = (await cri.listContainerStats(pod.id)) as { attributes: { id: string }; cpu: { usageCoreNanoSeconds: { value: number } }; memory: { workingSetBytes: { value: number } } }[];
        const mine = stats.find((st) => st.attributes.id === running);
        expect(mine?.cpu.usageCoreNanoSeconds.value).toBeGreaterThan(0);
        expect(mine?.memory.workingSetBytes.value).toBeGreaterThan(0);
      });
    });

    it('applies a new memory limit to the running container, stops with a grace period, and restarts a container in the pod', async () => {
      await withPod(new PodFixture(cri, handler), async (pod) => {
        const polite = await pod.container('polite', ['sh', '-c', 'trap "exit 0" TERM; while true; do sleep 0.1; done']);
        const stubborn = await pod.container('stubborn', ['sh', '-c', 'trap "" TERM; while true; do sleep 0.1; done']);
        await cri.updateContainerResources(polite, { memoryLimitInBytes: 200 * 1024 * 1024 });
        const limit = await pod.sh(
          polite,
          'if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then cat /sys/fs/cgroup/memory/memory.limit_in_bytes; ' +
            'else p=$(grep "^0::" /proc/self/cgroup | cut -d: -f3); cat "/sys/fs/cgroup${p%/}/memory.max" 2>/dev/null || cat /sys/fs/cgroup/memory.max; fi',
        );
        expect(limit.out.trim()).toBe(String(200 * 1024 * 1024));

        let t = Date.now();
        await cri.stopContainer(polite, 10);
        expect(Date.now() - t).toBeLessThan(5_000);
        expect((await cri.containerStatus(polite)).status).toMatchObject({ state: 'CONTAINER_EXITED', exitCode: 0 });
        t = Date.now();
        await cri.stopContainer(stubborn, 2);
        expect(Date.now() - t).toBeGreaterThanOrEqual(2_000);
        expect((await cri.containerStatus(stubborn)).status).toMatchObject({ state: 'CONTAINER_EXITED', exitCode: 137 });

        // kubelet restarts a container as a new one with the next attempt, in the running pod.
        await cri.removeContainer(polite);
        await cri.removeContainer(stubborn);
        const again = await pod.container('polite', ['sleep', '600'], { metadata: { name: 'polite', attempt: 1 } });
        expect((await pod.sh(again, 'echo back')).out).toBe('back\n');
      });
    });
  });

  it.each(['qemu-system', 'virtiofsd'])('reports a kata-ts pod’s containers exited when its %s is killed, and CRI removes the pod cleanly', async (part) => {
    const pod = new PodFixture(cri, 'kata-ts');
    try {
      await pod.run();
      const app = await pod.container('app', ['sleep', '600']);
      // QEMU carries the pod id in its name; virtiofsd is the other child of the same shim.
      const ppid = (pid: number) => Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
      const qemu = sandboxProcesses().find((p) => p.cmd.includes('qemu-system') && p.cmd.includes(pod.id));
      const victim = part === 'qemu-system' ? qemu : sandboxProcesses().find((p) => p.cmd.includes('virtiofsd') && qemu && ppid(p.pid) === ppid(qemu.pid));
      expect(victim).toBeDefined();
      process.kill(victim!.pid, 'SIGKILL');
      await eventually(async () => (await cri.containerStatus(app)).status.state === 'CONTAINER_EXITED', 20_000);
      expect((await cri.containerStatus(app)).status.exitCode).toBe(255);
      await cri.removeContainer(app);
    } finally {
      await pod.remove();
    }
  });

  it('refuses a kata-ts pod on the host network, saying a VM cannot share it', async () => {
    const pod = new PodFixture(cri, 'kata-ts');
    const linux = pod.config.linux as { securityContext: { namespaceOptions: Record<string, string> } };
    linux.securityContext.namespaceOptions.network = 'NODE';
    try {
      await expect(pod.run()).rejects.toThrow(/host's network namespace.*cannot share/);
    } finally {
      await pod.remove();
    }
  });

  afterEach(async () => {
    // Whatever a test did, nothing of its pods is left: no VM, virtiofsd, shim, mount or run folder.
    await eventually(() => leftovers().length === 0, 20_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
  });
});
