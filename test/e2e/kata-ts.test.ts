// kata-ts through the real containerd and the real ctr: every container runs
// in its own VM (QEMU under TCG here), reached by containerd through our shim.
import { createHash } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import os from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, BUSYBOX_USER_IMAGE, BUSYBOX_USER_IMAGE_TAR, PrivateContainerd, type CtrOptions } from '../helpers/containerd.js';
import { eventually, leftovers, sandboxProcesses } from '../helpers/host-state.js';

const KATA = 'io.containerd.kata-ts.v2';
let seq = 0;
const newId = () => `kt-${process.pid}-${++seq}`;

describe('ctr run --runtime io.containerd.kata-ts.v2', () => {
  let ctrd: PrivateContainerd;
  const run = (args: string[], opts?: CtrOptions) => ctrd.ctr(['run', '--rm', '--runtime', KATA, ...args], opts);
  const taskStatus = async (id: string) =>
    (await ctrd.ctr(['task', 'ls'])).stdout
      .toString()
      .split('\n')
      .find((l) => l.startsWith(`${id} `))
      ?.split(/\s+/)[2];

  beforeAll(async () => {
    ctrd = await PrivateContainerd.start();
    await ctrd.importImage(BUSYBOX_IMAGE_TAR);
    await ctrd.importImage(BUSYBOX_USER_IMAGE_TAR);
  });
  afterAll(async () => ctrd?.stop());
  afterEach(async () => {
    // containerd runs the shim's delete after the shim exits; give the VM teardown a moment.
    await eventually(() => leftovers().length === 0, 15_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
  });

  it('prints the output of echo, from the guest kernel', async () => {
    const r = await run([BUSYBOX_IMAGE, newId(), 'sh', '-c', 'echo hello; uname -r']);
    expect(r.stderr).toBe('');
    const [hello, kernel] = r.stdout.toString().trim().split('\n');
    expect(hello).toBe('hello');
    expect(kernel).toMatch(/kata-ts/);
    expect(kernel).not.toBe(os.release());
    expect(r.code).toBe(0);
  });

  it.each([0, 1, 42])('passes exit code %i through as ctr’s', async (code) => {
    const r = await run([BUSYBOX_IMAGE, newId(), 'sh', '-c', `exit ${code}`]);
    expect(r.code).toBe(code);
  });

  it('reports 137 after ctr task kill -s SIGKILL', async () => {
    const id = newId();
    const running = run([BUSYBOX_IMAGE, id, 'sleep', '100']);
    await eventually(async () => (await taskStatus(id)) === 'RUNNING');
    expect((await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', id])).code).toBe(0);
    expect((await running).code).toBe(137);
  });

  it('pipes stdin into cat and cat sees EOF', async () => {
    const input = 'line one\nline two\n';
    const r = await run([BUSYBOX_IMAGE, newId(), 'cat'], { input });
    expect(r.stdout.toString()).toBe(input);
    expect(r.code).toBe(0);
  });

  it('gives the process a terminal with ctr run -t', async () => {
    const id = newId();
    // ctr -t needs a terminal of its own: script(1) gives it one, sized 30x100; ctr passes the size on.
    const cmd = `stty rows 30 cols 100; ctr -a ${ctrd.address} run --rm -t --runtime ${KATA} ${BUSYBOX_IMAGE} ${id} sh -c 'tty; sleep 1; stty size'`;
    const out = execFileSync('script', ['-qec', cmd, '/dev/null'], { timeout: 90_000 }).toString();
    expect(out).toMatch(/\/dev\/pts\/\d+/);
    expect(out).toContain('30 100');
  });

  it('passes --env, --cwd and the image user to the process', async () => {
    const env = await run(['--env', 'GREETING=hi there', '--cwd', '/tmp', BUSYBOX_IMAGE, newId(), 'sh', '-c', 'echo "$GREETING"; pwd']);
    expect(env.stdout.toString()).toBe('hi there\n/tmp\n');
    const user = await run([BUSYBOX_USER_IMAGE, newId(), 'sh', '-c', 'id -u; id -g; pwd']);
    expect(user.stdout.toString()).toBe('1000\n1000\n/home/user\n');
  });

  it('hands stdout and stderr to a logging binary named by --log-uri', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-logger-'));
    const id = newId();
    try {
      const logger = join(dir, 'logger.sh');
      // containerd's protocol: stdout on fd 3, stderr on fd 4, ready once fd 5 is closed; no PATH.
      writeFileSync(
        logger,
        '#!/bin/sh\nexec 5>&-\n/bin/cat <&3 > "$1/$CONTAINER_NAMESPACE-$CONTAINER_ID.out" &\n/bin/cat <&4 > "$1/$CONTAINER_NAMESPACE-$CONTAINER_ID.err"\nwait\n',
        { mode: 0o755 },
      );
      const r = await run(['--log-uri', `binary://${logger}?${dir}`, BUSYBOX_IMAGE, id, 'sh', '-c', 'echo to stdout; echo to stderr >&2; exit 3']);
      expect(r.code).toBe(3);
      expect(readFileSync(join(dir, `default-${id}.out`), 'utf8')).toBe('to stdout\n');
      expect(readFileSync(join(dir, `default-${id}.err`), 'utf8')).toBe('to stderr\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('delivers 10 MB of output byte for byte', async () => {
    const r = await run([BUSYBOX_IMAGE, newId(), 'sh', '-c', 'yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 10000000']);
    expect(r.code).toBe(0);
    const expected = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz\n'.repeat(Math.ceil(10_000_000 / 37))).subarray(0, 10_000_000);
    const hash = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(r.stdout.length).toBe(10_000_000);
    expect(hash(r.stdout)).toBe(hash(expected));
  });

  it('runs detached, then exec, ps, metrics, pause, resume, kill and delete', async () => {
    const id = newId();
    expect((await ctrd.ctr(['run', '-d', '--runtime', KATA, BUSYBOX_IMAGE, id, 'sleep', '300'])).code).toBe(0);
    expect(await taskStatus(id)).toBe('RUNNING');

    const exec = await ctrd.ctr(['task', 'exec', '--exec-id', 'e1', id, 'sh', '-c', 'echo from exec; exit 7']);
    expect(exec.stdout.toString()).toBe('from exec\n');
    expect(exec.code).toBe(7);

    const ps = await ctrd.ctr(['task', 'ps', id]);
    expect(ps.code).toBe(0);
    expect(ps.stdout.toString()).toMatch(/PID/);
    expect(ps.stdout.toString().trim().split('\n').length).toBeGreaterThanOrEqual(2);

    const metrics = await ctrd.ctr(['task', 'metrics', id]);
    expect(metrics.stderr).toBe('');
    expect(metrics.stdout.toString()).toMatch(/memory\.usage_in_bytes|pids\.current|memory/i);

    expect((await ctrd.ctr(['task', 'pause', id])).code).toBe(0);
    expect(await taskStatus(id)).toBe('PAUSED');
    expect((await ctrd.ctr(['task', 'resume', id])).code).toBe(0);
    expect(await taskStatus(id)).toBe('RUNNING');

    expect((await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', id])).code).toBe(0);
    await eventually(async () => (await taskStatus(id)) === 'STOPPED');
    expect((await ctrd.ctr(['task', 'delete', id])).code).toBe(0);
    expect((await ctrd.ctr(['container', 'delete', id])).code).toBe(0);
  });

  it('runs detached and lets ctr task attach read the output', async () => {
    const id = newId();
    expect((await ctrd.ctr(['run', '-d', '--runtime', KATA, BUSYBOX_IMAGE, id, 'sh', '-c', 'sleep 2; echo attached output'])).code).toBe(0);
    const attached = await ctrd.ctr(['task', 'attach', id]);
    expect(attached.stdout.toString()).toBe('attached output\n');
    expect(attached.code).toBe(0);
    // ctr 1.6's attach deletes the task once it has exited.
    expect(await taskStatus(id)).toBeUndefined();
    expect((await ctrd.ctr(['container', 'delete', id])).code).toBe(0);
  });

  it('enforces the memory limit in the guest and reports the OOM kill as an event', async () => {
    const events = spawn('ctr', ['-a', ctrd.address, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let seen = '';
    events.stdout.on('data', (c: Buffer) => (seen += c.toString()));
    try {
      const id = newId();
      // tail keeps its one endless line in memory: far more than 32 MiB.
      const r = await run(['--memory-limit', String(32 * 1024 * 1024), BUSYBOX_IMAGE, id, 'sh', '-c', 'head -c 200000000 /dev/zero | tail -n 1 >/dev/null']);
      expect(r.code).toBe(137);
      await eventually(() => seen.includes('/tasks/oom'), 10_000);
      expect(seen).toMatch(new RegExp(`/tasks/oom.*${id}`));
    } finally {
      events.kill();
    }
  });

  it('reads the configuration file named by the runtime options, and names a bad key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-config-'));
    try {
      const good = join(dir, 'good.toml');
      writeFileSync(good, '[hypervisor]\ndefault_memory = 320\n');
      const r = await run(['--runtime-config-path', good, BUSYBOX_IMAGE, newId(), 'sh', '-c', "awk '/MemTotal/{print $2}' /proc/meminfo"]);
      expect(r.code).toBe(0);
      // 320 MiB of RAM less what the guest kernel keeps for itself.
      expect(Number(r.stdout.toString())).toBeGreaterThan(256 * 1024);
      const bad = join(dir, 'bad.toml');
      writeFileSync(bad, '[hypervisor]\ndefault_memroy = 320\n');
      const failed = await run(['--runtime-config-path', bad, BUSYBOX_IMAGE, newId(), 'true']);
      expect(failed.code).not.toBe(0);
      expect(failed.stderr).toContain('hypervisor.default_memroy: unknown key');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sets the shim’s OOM score, and cleans up after a killed shim under the run root its configuration file set', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-runroot-'));
    const id = newId();
    try {
      const config = join(dir, 'configuration.toml');
      writeFileSync(config, `[runtime]\nrun_root = "${dir}/run"\n`);
      expect((await ctrd.ctr(['run', '-d', '--runtime', KATA, '--runtime-config-path', config, BUSYBOX_IMAGE, id, 'sleep', '300'])).code).toBe(0);
      expect(readdirSync(join(dir, 'run/vm'))).toHaveLength(1);
      const shim = sandboxProcesses().find((p) => p.cmd.includes('containerd-shim-kata-ts-v2') && p.cmd.includes(` -id ${id} `));
      expect(shim).toBeDefined();
      // The shim sits one OOM point above containerd, as containerd's own shims do; QEMU inherits it.
      const oomScore = (pid: number) => Number(readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8'));
      const qemu = sandboxProcesses().find((p) => p.cmd.includes(`-name kata-ts-${id}@default `));
      expect(oomScore(shim!.pid)).toBe(Math.min(1000, oomScore(ctrd.pid!) + 1));
      expect(oomScore(qemu!.pid)).toBe(oomScore(shim!.pid));
      process.kill(shim!.pid, 'SIGKILL');
      // containerd sees the shim go and runs its delete, which must find the VM under the configured run root.
      await eventually(() => leftovers().length === 0 && readdirSync(join(dir, 'run/vm')).length === 0 && !readFileSync('/proc/self/mountinfo', 'utf8').includes(dir));
      expect(readdirSync(join(dir, 'run/shared'))).toEqual([]);
    } finally {
      await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
      await ctrd.ctr(['task', 'delete', id]);
      await ctrd.ctr(['container', 'delete', id]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs containers of the same id in two containerd namespaces side by side', async () => {
    const id = newId();
    const other = { namespace: 'kata-ts-other' };
    expect((await ctrd.ctr(['image', 'import', BUSYBOX_IMAGE_TAR], other)).code).toBe(0);
    try {
      for (const opts of [{}, other]) expect((await ctrd.ctr(['run', '-d', '--runtime', KATA, BUSYBOX_IMAGE, id, 'sleep', '300'], opts)).code).toBe(0);
      const inOther = await ctrd.ctr(['task', 'exec', '--exec-id', 'e1', id, 'echo', 'other'], other);
      expect(inOther.stdout.toString()).toBe('other\n');
      expect(sandboxProcesses().filter((p) => p.cmd.includes('qemu-system'))).toHaveLength(2);
    } finally {
      for (const opts of [{}, other]) {
        await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', id], opts);
        await eventually(async () => !(await ctrd.ctr(['task', 'ls'], opts)).stdout.toString().includes('RUNNING'));
        await ctrd.ctr(['task', 'delete', id], opts);
        await ctrd.ctr(['container', 'delete', id], opts);
      }
    }
  });

  it('keeps a sandbox running across a containerd restart, and still serves it after', async () => {
    const id = newId();
    expect((await ctrd.ctr(['run', '-d', '--runtime', KATA, BUSYBOX_IMAGE, id, 'sleep', '300'])).code).toBe(0);
    const qemuBefore = sandboxProcesses().find((p) => p.cmd.includes(`-name kata-ts-${id}@default `));
    await ctrd.restart();
    // containerd reconnects to the shim from the bundle's address file.
    expect(await taskStatus(id)).toBe('RUNNING');
    const exec = await ctrd.ctr(['task', 'exec', '--exec-id', 'e1', id, 'echo', 'after the restart']);
    expect(exec.stdout.toString()).toBe('after the restart\n');
    expect(sandboxProcesses().find((p) => p.cmd.includes(`-name kata-ts-${id}@default `))?.pid).toBe(qemuBefore?.pid);
    await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
    await eventually(async () => (await taskStatus(id)) === 'STOPPED');
    expect((await ctrd.ctr(['task', 'delete', id])).code).toBe(0);
    await ctrd.ctr(['container', 'delete', id]);
  });

  it('runs three containers in parallel', async () => {
    const results = await Promise.all([1, 2, 3].map((n) => run([BUSYBOX_IMAGE, newId(), 'echo', `container ${n}`])));
    expect(results.map((r) => r.stdout.toString())).toEqual(['container 1\n', 'container 2\n', 'container 3\n']);
    expect(results.map((r) => r.code)).toEqual([0, 0, 0]);
  });

  it('binds host folders and files with ctr run --mount, read-only when asked, and names a missing source', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-bind-'));
    try {
      writeFileSync(join(dir, 'f'), 'from the host\n');
      const ro = await run(['--mount', `type=bind,src=${dir},dst=/data,options=rbind:ro`, BUSYBOX_IMAGE, newId(), 'sh', '-c', 'cat /data/f; echo x > /data/g']);
      expect(ro.stdout.toString()).toBe('from the host\n');
      expect(ro.stderr).toMatch(/Read-only file system/);
      expect(ro.code).not.toBe(0);
      const rw = await run(['--mount', `type=bind,src=${dir},dst=/data,options=rbind:rw`, '--mount', `type=bind,src=${join(dir, 'f')},dst=/etc/f,options=rbind:ro`, BUSYBOX_IMAGE, newId(), 'sh', '-c', 'cat /etc/f; echo written > /data/g']);
      expect(rw.stdout.toString()).toBe('from the host\n');
      expect(rw.code).toBe(0);
      expect(readFileSync(join(dir, 'g'), 'utf8')).toBe('written\n');
      const missing = await run(['--mount', 'type=bind,src=/no/such/dir,dst=/data,options=rbind:ro', BUSYBOX_IMAGE, newId(), 'true']);
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toMatch(/mount \/data: bind source \/no\/such\/dir does not exist/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses --net-host, a VM cannot share the host network namespace, unless configured to isolate it', async () => {
    const r = await run(['--net-host', BUSYBOX_IMAGE, newId(), 'true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/host's network namespace.*cannot share/);
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-config-'));
    try {
      writeFileSync(join(dir, 'isolate.toml'), '[runtime]\nhost_network = "isolate"\n');
      const isolated = await run(['--net-host', '--runtime-config-path', join(dir, 'isolate.toml'), BUSYBOX_IMAGE, newId(), 'sh', '-c', 'ls /sys/class/net']);
      expect(isolated.stdout.toString()).toBe('lo\n');
      expect(isolated.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports the exit of a process whose background child keeps its output open, within the flush bound', async () => {
    const t0 = Date.now();
    const r = await run([BUSYBOX_IMAGE, newId(), 'sh', '-c', 'sleep 100 & echo hi; exit 3']);
    expect(r.stdout.toString()).toBe('hi\n');
    expect(r.code).toBe(3);
    expect(Date.now() - t0).toBeLessThan(30_000);
    const id = newId();
    expect((await ctrd.ctr(['run', '-d', '--runtime', KATA, BUSYBOX_IMAGE, id, 'sleep', '600'])).code).toBe(0);
    try {
      const exec = await ctrd.ctr(['task', 'exec', '--exec-id', 'bg', id, 'sh', '-c', 'sleep 100 & echo from-exec'], { timeoutMs: 30_000 });
      expect(exec.stdout.toString()).toBe('from-exec\n');
      expect(exec.code).toBe(0);
    } finally {
      await ctrd.ctr(['task', 'rm', '-f', id]);
      await ctrd.ctr(['container', 'rm', id]);
    }
  });

  it('reports the task exited when its virtiofsd is killed, and removes cleanly after', async () => {
    const id = newId();
    expect((await ctrd.ctr(['run', '-d', '--runtime', KATA, BUSYBOX_IMAGE, id, 'sleep', '600'])).code).toBe(0);
    const virtiofsd = sandboxProcesses().find((p) => p.cmd.includes('virtiofsd') && p.cmd.includes(`${id}@`));
    expect(virtiofsd).toBeDefined();
    const killedAt = Date.now();
    process.kill(virtiofsd!.pid, 'SIGKILL');
    await eventually(async () => (await taskStatus(id)) === 'STOPPED', 15_000);
    expect(Date.now() - killedAt).toBeLessThan(10_000);
    expect((await ctrd.ctr(['task', 'rm', id])).code).toBe(0);
    expect((await ctrd.ctr(['container', 'rm', id])).code).toBe(0);
  });

  it('kills a stopped (SIGSTOP) QEMU once the guest is silent for hung_timeout, and reports the task exited with 255', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-config-'));
    try {
      writeFileSync(join(dir, 'hung.toml'), '[agent]\nhung_timeout = 3\n');
      const id = newId();
      const running = run(['--runtime-config-path', join(dir, 'hung.toml'), BUSYBOX_IMAGE, id, 'sleep', '600'], { timeoutMs: 60_000 });
      await eventually(async () => (await taskStatus(id)) === 'RUNNING');
      const qemu = sandboxProcesses().find((p) => p.cmd.includes('qemu-system') && p.cmd.includes(`${id}@`));
      expect(qemu).toBeDefined();
      const stoppedAt = Date.now();
      process.kill(qemu!.pid, 'SIGSTOP');
      expect((await running).code).toBe(255);
      // The bound, a check interval of slack, and the teardown.
      expect(Date.now() - stoppedAt).toBeLessThan(15_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('puts two containers of one CRI pod in one shim and one VM', async () => {
    const pod = newId();
    const child = newId();
    const annotate = (type: string) => ['--annotation', `io.kubernetes.cri.container-type=${type}`, '--annotation', `io.kubernetes.cri.sandbox-id=${pod}`];
    expect((await ctrd.ctr(['run', '-d', '--runtime', KATA, ...annotate('sandbox'), BUSYBOX_IMAGE, pod, 'sleep', '300'])).code).toBe(0);
    expect((await ctrd.ctr(['run', '-d', '--runtime', KATA, ...annotate('container'), BUSYBOX_IMAGE, child, 'sleep', '300'])).code).toBe(0);
    // Whole command lines: leftovers() cuts them short, and a long checkout path can cut the shim's name.
    const processes = sandboxProcesses().map((p) => p.cmd);
    expect(processes.filter((p) => p.includes('qemu-system'))).toHaveLength(1);
    expect(processes.filter((p) => p.includes('containerd-shim-kata-ts-v2'))).toHaveLength(1);
    const exec = await ctrd.ctr(['task', 'exec', '--exec-id', 'e1', child, 'echo', 'in the pod']);
    expect(exec.stdout.toString()).toBe('in the pod\n');

    // Removing the pod's container leaves the sandbox running.
    await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', child]);
    await eventually(async () => (await taskStatus(child)) === 'STOPPED');
    await ctrd.ctr(['task', 'delete', child]);
    await ctrd.ctr(['container', 'delete', child]);
    expect(await taskStatus(pod)).toBe('RUNNING');

    await ctrd.ctr(['task', 'kill', '-s', 'SIGKILL', pod]);
    await eventually(async () => (await taskStatus(pod)) === 'STOPPED');
    await ctrd.ctr(['task', 'delete', pod]);
    await ctrd.ctr(['container', 'delete', pod]);
  });
});
