// `kata-ts job run` as a CI system runs it: the installed command, a real VM
// per job, and what it leaves: exit codes, reports, workspaces, nothing else.
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, PrivateContainerd, REPO } from '../helpers/containerd.js';
import { eventually, leftovers, sandboxProcesses } from '../helpers/host-state.js';

const KATA_TS = join(REPO, 'build/bin/kata-ts');
const JOBS_DIR = '/run/kata-ts/jobs';

interface JobRun {
  code: number;
  stdout: string;
  stderr: string;
}

function job(args: string[], o: { onSpawn?: (pid: number) => void; timeoutMs?: number } = {}): Promise<JobRun> {
  return new Promise((resolve, reject) => {
    const p = spawn(KATA_TS, ['job', 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 90_000);
    p.once('spawn', () => o.onSpawn?.(p.pid!));
    p.once('error', reject);
    p.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 + (signal === 'SIGKILL' ? 9 : 15), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

const jobsLeft = () => (existsSync(JOBS_DIR) ? readdirSync(JOBS_DIR) : []);

describe('kata-ts job run', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kata-ts-job-test-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    await eventually(() => leftovers().length === 0 && jobsLeft().length === 0, 15_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
    expect(jobsLeft()).toEqual([]);
  });

  it.each([0, 1, 42])('exits with the job’s own status %i, its stdout and stderr kept apart', async (status) => {
    const r = await job(['--', 'sh', '-c', `echo to-stdout; echo to-stderr >&2; exit ${status}`]);
    expect(r.stdout).toBe('to-stdout\n');
    expect(r.stderr).toContain('to-stderr\n');
    expect(r.code).toBe(status);
  });

  it('exits 124 past --timeout, says so in the report, and writes a JUnit file that parses', async () => {
    const report = join(dir, 'timeout.json');
    const junit = join(dir, 'timeout.xml');
    const started = Date.now();
    const r = await job(['--timeout', '3s', '--grace', '1s', '--report', report, '--junit', junit, '--name', 'sleeps too long', '--', 'sleep', '600']);
    expect(r.code).toBe(124);
    expect(Date.now() - started).toBeLessThan(30_000);
    const rep = JSON.parse(readFileSync(report, 'utf8')) as Record<string, unknown>;
    expect(rep).toMatchObject({ outcome: 'timed-out', timedOut: true, exitCode: 124, name: 'sleeps too long' });
    expect(Object.keys(rep.phasesMs as object)).toEqual(['boot', 'image', 'job', 'teardown']);
    // A real XML parser reads it.
    const parsed = execFileSync('python3', ['-c', 'import sys, xml.etree.ElementTree as E; s = E.parse(sys.argv[1]).getroot().find("testsuite"); c = s.find("testcase"); print(s.get("failures"), c.get("name"), c.find("failure").get("type"))', junit]).toString();
    expect(parsed).toBe('1 sleeps too long timeout\n');
  });

  it('reports a job that allocates past --memory as OOM-killed', async () => {
    const report = join(dir, 'oom.json');
    const r = await job(['--memory', '64m', '--report', report, '--', 'tail', '/dev/zero']);
    expect(r.code).toBe(137);
    expect(JSON.parse(readFileSync(report, 'utf8'))).toMatchObject({ outcome: 'failed', oomKilled: true, jobExitStatus: 137, signal: 9 });
  });

  it('shows a read-write workspace’s changes on the host; a copied one stays untouched but its artifacts come back', async () => {
    const rw = join(dir, 'rw');
    mkdirSync(rw);
    writeFileSync(join(rw, 'in.txt'), 'input\n');
    const r1 = await job(['--workspace', rw, '--', 'sh', '-c', 'pwd; cat in.txt; echo made in the guest > out.txt']);
    expect(r1.stdout).toBe('/workspace\ninput\n');
    expect(readFileSync(join(rw, 'out.txt'), 'utf8')).toBe('made in the guest\n');

    const copied = join(dir, 'copied');
    mkdirSync(copied);
    writeFileSync(join(copied, 'in.txt'), 'input\n');
    const report = join(dir, 'artifacts.json');
    const script = 'rm in.txt && mkdir -p dist && echo built > dist/app.txt && echo scratch > junk.txt';
    const r2 = await job(['--workspace', copied, '--copy-workspace', '--artifact', 'dist', '--artifact', 'missing.txt', '--report', report, '--', 'sh', '-c', script]);
    expect(r2.code).toBe(0);
    expect(readFileSync(join(copied, 'in.txt'), 'utf8')).toBe('input\n');
    expect(existsSync(join(copied, 'junk.txt'))).toBe(false);
    expect(readFileSync(join(copied, 'dist/app.txt'), 'utf8')).toBe('built\n');
    expect(JSON.parse(readFileSync(report, 'utf8')).missingArtifacts).toEqual(['missing.txt']);
    expect(r2.stderr).toContain('artifacts not found: missing.txt');
  });

  it('has loopback only: a server on the host’s 127.0.0.1 gets no connection', async () => {
    let connections = 0;
    const server = net.createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const r = await job(['--', 'sh', '-c', `ls /sys/class/net; nc -w 3 127.0.0.1 ${port} </dev/null && echo reached || echo unreachable`]);
      expect(r.stdout).toBe('lo\nunreachable\n');
      expect(connections).toBe(0);
    } finally {
      server.close();
    }
  });

  it('with --network nat connects out through the host, never to the host’s loopback, and its NAT dies with a killed runner', async () => {
    const hostAddress = Object.values(networkInterfaces())
      .flat()
      .find((a) => a?.family === 'IPv4' && !a.internal)?.address;
    expect(hostAddress, 'the host needs an address besides loopback').toBeDefined();
    const loopbackOnly = net.createServer((s) => s.destroy());
    const open = net.createServer((s) => s.end('hello from the host\n'));
    let loopbackConnections = 0;
    loopbackOnly.on('connection', () => loopbackConnections++);
    await new Promise<void>((r) => loopbackOnly.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => open.listen(0, '0.0.0.0', r));
    const lo = (loopbackOnly.address() as net.AddressInfo).port;
    const port = (open.address() as net.AddressInfo).port;
    try {
      const probe = (host: string, p: number) => `nc -w 3 ${host} ${p} </dev/null >/dev/null && echo ${host}:${p} reached || echo ${host}:${p} unreachable`;
      const script = [
        'ip -4 -o addr show eth0 | grep -o "inet [0-9./]*"',
        'cat /etc/resolv.conf',
        `nc -w 3 ${hostAddress} ${port} </dev/null`,
        probe('10.0.2.2', lo),
        probe(hostAddress!, lo),
        probe('10.0.2.2', port),
      ].join('; ');
      const r = await job(['--network', 'nat', '--', 'sh', '-c', script]);
      expect(r.stdout).toBe(
        [
          'inet 10.0.2.100/24',
          'nameserver 10.0.2.3',
          'hello from the host',
          `10.0.2.2:${lo} unreachable`,
          `${hostAddress}:${lo} unreachable`,
          `10.0.2.2:${port} unreachable`,
          '',
        ].join('\n'),
      );
      expect(r.code).toBe(0);
      expect(loopbackConnections).toBe(0);
    } finally {
      loopbackOnly.close();
      open.close();
    }

    let pid = 0;
    const killed = job(['--network', 'nat', '--', 'sleep', '600'], { onSpawn: (p) => (pid = p) });
    await eventually(() => sandboxProcesses().some((p) => /slirp4netns/.test(p.cmd)), 30_000);
    process.kill(pid, 'SIGKILL');
    await killed;
    await eventually(() => !sandboxProcesses().some((p) => /slirp4netns|kata-ts-job-/.test(p.cmd)), 10_000);
    expect(sandboxProcesses()).toEqual([]);
    expect((await job(['--', 'true'])).code).toBe(0); // and the sweep removes the rest
  });

  it('shows a secret file in the guest only: it is in no output, log, report or JUnit file', async () => {
    const secret = `s3cr3t-${process.pid}-${Date.now()}`;
    const file = join(dir, 'token');
    writeFileSync(file, secret);
    const out = { report: join(dir, 'secret.json'), junit: join(dir, 'secret.xml'), log: join(dir, 'secret.log') };
    const r = await job(['--secret', `token=${file}`, '--report', out.report, '--junit', out.junit, '--log', out.log, '--', 'sh', '-c', 'md5sum < /run/secrets/token; ls -l /run/secrets']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(createHash('md5').update(secret).digest('hex'));
    expect(r.stdout).toMatch(/-r-------- .* token/);
    for (const text of [r.stdout, r.stderr, ...Object.values(out).map((f) => readFileSync(f, 'utf8'))]) expect(text).not.toContain(secret);
  });

  it('runs on an OCI image tarball, unpacked once into the layer cache and taken from it the next time', async () => {
    const cache = join(dir, 'layers');
    const reports = [join(dir, 'image-1.json'), join(dir, 'image-2.json')];
    for (const report of reports) {
      const r = await job(['--image-tar', BUSYBOX_IMAGE_TAR, '--layer-cache', cache, '--report', report, '--', 'sh', '-c', 'echo from the image > /etc/motd; cat /etc/motd']);
      expect([r.code, r.stdout]).toEqual([0, 'from the image\n']);
    }
    const [first, second] = reports.map((f) => JSON.parse(readFileSync(f, 'utf8')) as { image: { layers: number; unpacked: number } });
    expect(first!.image.unpacked).toBe(first!.image.layers);
    expect(second!.image).toEqual({ layers: first!.image.layers, unpacked: 0 });
    // What the job wrote stayed in its own overlay.
    for (const layer of readdirSync(cache)) expect(existsSync(join(cache, layer, 'etc/motd'))).toBe(false);
    const broken = await job(['--image-tar', join(dir, 'no-such-image.tar'), '--', 'true']);
    expect(broken.code).toBe(125);
    expect(broken.stderr).toContain('no-such-image.tar: is not a file');
  });

  it('runs on an image from containerd’s content store, and gives its snapshot back after', async () => {
    const ctrd = await PrivateContainerd.start();
    try {
      await ctrd.importImage(BUSYBOX_IMAGE_TAR);
      const target = ['--containerd', ctrd.address, '--namespace', ctrd.namespace];
      const r = await job(['--image', BUSYBOX_IMAGE, ...target, '--', 'sh', '-c', 'echo written > /etc/motd; cat /etc/motd; echo $PATH']);
      expect([r.code, r.stdout]).toEqual([0, 'written\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n']);
      const snapshots = (await ctrd.ctr(['snapshots', 'ls'])).stdout.toString();
      expect(snapshots).not.toContain('/jobs/');
      const missing = await job(['--image', 'docker.io/library/no-such-image:latest', ...target, '--', 'true']);
      expect(missing.code).toBe(125);
      expect(missing.stderr).toContain('is not in containerd');
    } finally {
      await ctrd.stop();
    }
  });

  it('fails with 125 and says what is wrong when the runtime cannot run the job, before any VM boots', async () => {
    const missing = await job(['--rootfs', '/nonexistent/rootfs', '--', 'true']);
    expect(missing.code).toBe(125);
    expect(missing.stderr).toContain('the job’s root filesystem /nonexistent/rootfs is not a folder'.replace('’', "'"));
    const bad = await job(['--memory', 'lots', '--', 'true']);
    expect(bad.code).toBe(125);
    expect(bad.stderr).toContain('--memory "lots"');
  });

  it('runs two jobs at once, each in its own VM', async () => {
    const [a, b] = await Promise.all([
      job(['--', 'sh', '-c', 'echo a > /tmp/mine; sleep 1; cat /tmp/mine; ls /tmp']),
      job(['--', 'sh', '-c', 'echo b > /tmp/mine; sleep 1; cat /tmp/mine; ls /tmp']),
    ]);
    expect([a.code, a.stdout, b.code, b.stdout]).toEqual([0, 'a\nmine\n', 0, 'b\nmine\n']);
  });

  it('leaves nothing when its runner gets SIGINT; after a SIGKILL the VM dies with it and the next job removes the rest', async () => {
    const waitForVm = () => eventually(() => sandboxProcesses().some((p) => /qemu-system.*kata-ts-job-/.test(p.cmd)), 30_000);
    let pid = 0;
    const interrupted = job(['--', 'sleep', '600'], { onSpawn: (p) => (pid = p) });
    await waitForVm();
    process.kill(pid, 'SIGINT');
    expect((await interrupted).code).toBe(130);
    expect(leftovers()).toEqual([]);

    const killed = job(['--', 'sleep', '600'], { onSpawn: (p) => (pid = p) });
    await waitForVm();
    process.kill(pid, 'SIGKILL');
    await killed;
    await eventually(() => !sandboxProcesses().some((p) => /kata-ts-job-|source=\/run\/kata-ts\/shared\/job-/.test(p.cmd)), 10_000);
    expect(jobsLeft()).toHaveLength(1);
    const next = await job(['--', 'true']);
    expect(next.code).toBe(0);
    expect(next.stderr).toContain('removing what a killed job runner left');
  });
});
