// Real sandboxes: QEMU (TCG here) booted from the images in build/, the real
// agent, crun in the guest. Each test boots its own VM and checks that
// nothing of it is left afterwards.
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { VIRTIOFSD_PIDFILE } from '../../shim/src/hypervisor/vm.js';
import { sandboxDirs } from '../../shim/src/sandbox/sandbox-dirs.js';
import { join } from 'node:path';
import os from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentCallError, DebugConsoleDisabledError, SandboxDeadError } from '../../shim/src/sandbox/errors.js';
import { defaultSpec } from '../../shim/src/sandbox/default-spec.js';
import { processSpec } from '../../shim/src/sandbox/default-spec.js';
import type { Sandbox } from '../../shim/src/sandbox/sandbox.js';
import { eventually, sandboxProcesses } from '../helpers/host-state.js';
import { BUSYBOX_ROOTFS, REPO, collect, remainsOf, startSandbox, testSettings } from '../helpers/sandbox-harness.js';

let sandbox: Sandbox | undefined;

afterEach(async () => {
  if (!sandbox) return;
  const s = sandbox;
  sandbox = undefined;
  await s.stop();
  expect(remainsOf(s)).toEqual({ processes: [], mounts: [], paths: [] });
});

async function run(args: string[], extra: Parameters<typeof defaultSpec>[0] extends infer O ? Partial<O> : never = {}) {
  sandbox ??= await startSandbox();
  const id = `c${randomBytes(3).toString('hex')}`;
  await sandbox.createContainer(id, { spec: defaultSpec({ args, ...extra }), rootfs: BUSYBOX_ROOTFS });
  const { pid, process } = await sandbox.startContainer(id);
  return { id, pid, process };
}

describe('a container in a sandbox VM', () => {
  it('prints the output of echo', async () => {
    const { process } = await run(['echo', 'hello']);
    const [out, exit] = await Promise.all([collect(process.stdout), process.wait()]);
    expect(out.toString()).toBe('hello\n');
    expect(exit.status).toBe(0);
  });

  it('reports the exit code', async () => {
    const { process } = await run(['sh', '-c', 'echo to-stderr >&2; exit 3']);
    const [err, exit] = await Promise.all([collect(process.stderr), process.wait()]);
    expect(err.toString()).toBe('to-stderr\n');
    expect(exit.status).toBe(3);
  });

  it('reports 128+signal for SIGTERM and SIGKILL', async () => {
    sandbox = await startSandbox();
    // PID 1 of a pid namespace ignores SIGTERM unless it handles it (as with runc), so this sleep shares the guest's.
    const spec = defaultSpec({ args: ['sleep', '100'] }) as { linux: { namespaces: { type: string }[] } };
    spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== 'pid');
    await sandbox.createContainer('term', { spec, rootfs: BUSYBOX_ROOTFS });
    const term = await sandbox.startContainer('term');
    await term.process.signal(15);
    expect((await term.process.wait()).status).toBe(143);

    await sandbox.createContainer('kill', { spec: defaultSpec({ args: ['sleep', '100'] }), rootfs: BUSYBOX_ROOTFS });
    const kill = await sandbox.startContainer('kill');
    await kill.process.signal(9);
    expect((await kill.process.wait()).status).toBe(137);
  });

  it('passes 1 MiB through cat byte for byte', async () => {
    const input = randomBytes(1024 * 1024);
    const { process } = await run(['cat']);
    const out = collect(process.stdout);
    await process.pipeFrom([input]);
    const exit = await process.wait();
    expect(exit.status).toBe(0);
    const hash = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    expect(hash(await out)).toBe(hash(input));
  });

  it('delivers 10 MB of output completely before the exit status', async () => {
    const { process } = await run(['sh', '-c', 'yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c 10000000']);
    const out = collect(process.stdout);
    const exit = await process.wait();
    // wait() resolves only after the last byte reached the host-side stream.
    expect((process.stdout as unknown as { writableEnded: boolean }).writableEnded).toBe(true);
    expect(exit.status).toBe(0);
    const expected = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n'.repeat(Math.ceil(10_000_000 / 63))).subarray(0, 10_000_000);
    const got = await out;
    expect(got.length).toBe(10_000_000);
    expect(got.equals(expected)).toBe(true);
  });

  it('runs on the guest kernel, not the host one', async () => {
    const { process } = await run(['uname', '-r']);
    const out = (await collect(process.stdout)).toString().trim();
    await process.wait();
    expect(out).not.toBe(os.release());
    expect(out).toMatch(/kata-ts/);
  });

  it('runs an exec beside the running main process', async () => {
    const { id, process: main } = await run(['sleep', '100']);
    const { pid, process: exec } = await sandbox!.exec(id, 'e1', processSpec({ args: ['sh', '-c', 'echo from-exec; ps -o comm | grep -c sleep'] }));
    expect(pid).toBeGreaterThan(0);
    const out = collect(exec.stdout);
    expect((await exec.wait()).status).toBe(0);
    expect((await out).toString()).toBe('from-exec\n1\n');
    await main.signal(9);
    expect((await main.wait()).status).toBe(137);
  });

  it('gives a tty that reports its new size after a resize', async () => {
    const { process } = await run(['sh', '-c', 'stty size; read line; stty size'], { terminal: true, consoleSize: { height: 24, width: 80 } });
    let text = '';
    process.stdout.on('data', (c: Buffer) => (text += c.toString()));
    await expect.poll(() => text, { timeout: 30_000 }).toContain('24 80');
    await process.resize(40, 100);
    await process.write(Buffer.from('\n'));
    const exit = await process.wait();
    expect(exit.status).toBe(0);
    expect(text).toContain('40 100');
  });

  it('runs a debug console process outside every container, on a terminal of its size, when enabled', async () => {
    sandbox = await startSandbox({ debugConsoleEnabled: true });
    const { id, process: main } = await run(['sleep', '100']);
    const { pid, process: shell } = await sandbox.startDebugConsole('d1', ['sh', '-c', 'stty size; cat /proc/1/comm; ls /run/kata-ts/containers; exit 5'], ['TERM=vt100'], { rows: 30, columns: 90 });
    expect(pid).toBeGreaterThan(1);
    const out = collect(shell.stdout);
    expect((await shell.wait()).status).toBe(5);
    expect((await out).toString()).toBe(`30 90\r\ninit\r\n${id}\r\n`);
    await main.signal(9);
    expect((await main.wait()).status).toBe(137);
  });

  it('refuses the debug console when it is off, in the shim and in the agent both', async () => {
    await run(['true']);
    await expect(sandbox!.startDebugConsole('d1', ['sh'], [], { rows: 24, columns: 80 })).rejects.toThrow(DebugConsoleDisabledError);
    const direct = await sandbox!.agent.call('startDebugConsole', { execId: 'd1', args: ['sh'], env: [], rows: 24, columns: 80 }).catch((err: unknown) => err);
    expect(direct).toBeInstanceOf(AgentCallError);
    expect(direct).toMatchObject({ code: 7 /* PERMISSION_DENIED */, details: expect.stringContaining('debug_console_enabled') });
  });

  it('hands the guest memory a workload freed back to the host (free page reporting)', async () => {
    const guestRamMB = () => {
      let kb = 0;
      let inRam = false;
      for (const line of readFileSync(`/proc/${sandbox!.vm.pid}/smaps`, 'utf8').split('\n')) {
        if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inRam = line.includes('/memfd:');
        const pss = /^Pss:\s+(\d+) kB/.exec(line);
        if (pss && inRam) kb += Number(pss[1]);
      }
      return kb / 1024;
    };
    const { process } = await run(['sh', '-c', "x=$(head -c 80000000 /dev/zero | tr '\\0' a); echo ${#x}"]);
    const out = collect(process.stdout);
    expect((await process.wait()).status).toBe(0);
    expect((await out).toString()).toBe('80000000\n');
    const peak = guestRamMB();
    expect(peak).toBeGreaterThan(80);
    // The guest reports free 2 MiB blocks about every 2 s; QEMU then drops them from its RAM.
    await expect.poll(guestRamMB, { timeout: 15_000, interval: 500 }).toBeLessThan(peak - 60);
  });

  it('names a root filesystem that is not there, and leaves nothing of the container behind', async () => {
    sandbox = await startSandbox();
    await expect(sandbox.createContainer('gone', { spec: defaultSpec({ args: ['true'] }), rootfs: '/no/such/dir' })).rejects.toThrow(
      /container gone: its root filesystem \/no\/such\/dir is not a folder on the host/,
    );
    // afterEach checks the sandbox stops with no mount, folder or process left.
  });

  it('fails fast with a clear error for a command that does not exist', async () => {
    sandbox = await startSandbox();
    const started = Date.now();
    const err = await sandbox
      .createContainer('missing', { spec: defaultSpec({ args: ['no-such-command'] }), rootfs: BUSYBOX_ROOTFS })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgentCallError);
    expect((err as AgentCallError).code).toBe(5 /* NOT_FOUND */);
    expect((err as Error).message).toContain('no-such-command');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('ends its processes as in a dead sandbox when the agent dies in the guest, and stops cleanly after', async () => {
    const { process: sleeper } = await run(['sleep', '100']);
    const waiting = sleeper.wait().catch((e: unknown) => e);
    // A container on the guest's PID namespace kills the agent, as a fault in the guest would.
    const spec = defaultSpec({ args: ['sh', '-c', 'kill -9 $(pidof node)'] }) as { linux: { namespaces: { type: string }[] } };
    spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== 'pid');
    await sandbox!.createContainer('killer', { spec, rootfs: BUSYBOX_ROOTFS });
    await sandbox!.startContainer('killer').catch(() => undefined); // its answer may go down with the agent
    expect(await waiting).toBeInstanceOf(SandboxDeadError);
    // The guest's init powers the VM off once its agent is gone.
    expect(await sandbox!.vm.exited).toBeDefined();
  });

  it('fails a pending call with a clear error when the VM dies', async () => {
    const { process: container } = await run(['sleep', '100']);
    const waiting = container.wait().catch((e: unknown) => e);
    process.kill(sandbox!.vm.pid!, 'SIGKILL');
    expect(await waiting).toBeInstanceOf(SandboxDeadError);
  });
});

describe('a sandbox that cannot boot', () => {
  it('leaves nothing behind', async () => {
    const settings = testSettings({ kernelPath: '/nonexistent/vmlinux' });
    const before = existsSync(`${settings.runRoot}/vm`) ? readdirSync(`${settings.runRoot}/vm`) : [];
    const { startSandbox: start } = await import('../helpers/sandbox-harness.js');
    await expect(start({ kernelPath: '/nonexistent/vmlinux' })).rejects.toThrow(/could not open kernel file|nonexistent/);
    const after = existsSync(`${settings.runRoot}/vm`) ? readdirSync(`${settings.runRoot}/vm`) : [];
    expect(after).toEqual(before);
    expect(execFileSync('sh', ['-c', `grep -c ${settings.runRoot} /proc/self/mountinfo || true`]).toString().trim()).toBe('0');
  });

  it('starts no QEMU when its run folder cannot be written, and leaves nothing behind', async () => {
    const settings = testSettings();
    const name = `t${process.pid}-pidfile`;
    const { vmDir } = sandboxDirs(settings.runRoot, name);
    // A folder where virtiofsd's pidfile goes: writing it fails (EISDIR), also for root.
    mkdirSync(join(vmDir, VIRTIOFSD_PIDFILE), { recursive: true });
    await expect(startSandbox({}, { name })).rejects.toThrow(/EISDIR/);
    expect(sandboxProcesses().filter((p) => p.cmd.includes(name))).toEqual([]);
    expect(existsSync(vmDir)).toBe(false);
  });

  it('ends a boot as soon as its signal aborts (a Create containerd gave up on), and leaves nothing behind', async () => {
    const settings = testSettings();
    const vmDirs = () => (existsSync(`${settings.runRoot}/vm`) ? readdirSync(`${settings.runRoot}/vm`) : []);
    const before = vmDirs();
    const abort = new AbortController();
    let qemuPid = 0;
    // The agent answers about 2.4 s after launch under TCG: a boot that finished would resolve instead.
    const booting = startSandbox({}, { signal: abort.signal, onLaunched: () => setTimeout(() => abort.abort(new Error('Create gave up')), 300) });
    const watch = setInterval(() => (qemuPid ||= sandboxProcesses().find((p) => /qemu-system/.test(p.cmd))?.pid ?? 0), 50);
    await expect(booting).rejects.toThrow('Create gave up');
    clearInterval(watch);
    expect(qemuPid === 0 || !existsSync(`/proc/${qemuPid}`)).toBe(true);
    expect(vmDirs()).toEqual(before);
    expect(execFileSync('sh', ['-c', `grep -c ${settings.runRoot} /proc/self/mountinfo || true`]).toString().trim()).toBe('0');
  });

  it('names virtiofsd’s error when virtiofsd dies first, and leaves nothing behind', async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'kata-ts-virtiofsd-'));
    try {
      const failing = join(dir, 'virtiofsd');
      writeFileSync(failing, '#!/bin/sh\necho "cannot serve the shared directory: test failure" >&2\nexit 1\n', { mode: 0o755 });
      const settings = testSettings({ virtiofsdBinary: failing });
      const vmDirs = () => (existsSync(`${settings.runRoot}/vm`) ? readdirSync(`${settings.runRoot}/vm`) : []);
      const before = vmDirs();
      const { startSandbox: start } = await import('../helpers/sandbox-harness.js');
      await expect(start({ virtiofsdBinary: failing })).rejects.toThrow(/virtiofsd exited first: cannot serve the shared directory: test failure/);
      expect(vmDirs()).toEqual(before);
      expect(execFileSync('sh', ['-c', `grep -c ${settings.runRoot} /proc/self/mountinfo || true`]).toString().trim()).toBe('0');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a sandbox on a CNI-style network namespace', () => {
  const netns = `kt-int-${process.pid}`;
  const netnsPath = `/var/run/netns/${netns}`;
  const inNetns = (...args: string[]) => execFileSync('ip', ['netns', 'exec', netns, ...args]).toString();
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', netns]);
    // A veth with its peer in the host namespace, addressed as the bridge plugin would.
    execFileSync('ip', ['link', 'add', `ktint${process.pid % 10000}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    inNetns('ip', 'addr', 'add', '10.250.0.2/24', 'dev', 'eth0');
    inNetns('ip', 'link', 'set', 'eth0', 'up');
  });
  afterAll(() => {
    execFileSync('ip', ['netns', 'del', netns]); // takes the veth pair with it
  });

  it('gives the guest the interface, and takes the tap and the mirror away when the boot fails', async () => {
    await expect(startSandbox({ kernelPath: '/nonexistent/vmlinux' }, { netnsPath })).rejects.toThrow(/nonexistent/);
    expect(inNetns('ip', '-o', 'link', 'show')).not.toMatch(/tap\d+_kt/);
    expect(inNetns('tc', 'qdisc', 'show', 'dev', 'eth0')).not.toMatch(/ingress/);

    sandbox = await startSandbox({}, { netnsPath });
    expect(inNetns('ip', '-o', 'link', 'show')).toMatch(/tap0_kt/);
    await sandbox.stop();
    expect(inNetns('ip', '-o', 'link', 'show')).not.toMatch(/tap\d+_kt/);
    expect(inNetns('tc', 'qdisc', 'show', 'dev', 'eth0')).not.toMatch(/ingress/);
  });

  it('fails at once with a clear error when the namespace is gone', async () => {
    await expect(startSandbox({}, { netnsPath: '/var/run/netns/kt-no-such-netns' })).rejects.toThrow(/network namespace \/var\/run\/netns\/kt-no-such-netns is gone/);
  });
});

describe('a sandbox whose network namespace is filled after create (ctr run --cni)', () => {
  const hostEnd = `ktlate${process.pid % 10000}`;
  afterAll(() => {
    execFileSync('sh', ['-c', `ip link del ${hostEnd} 2>/dev/null || true`]);
  });

  it("runs QEMU in a namespace of its own with a tap ready, and carries CNI's interface into the guest at start", async () => {
    sandbox = await startSandbox({}, { lateNetwork: true });
    const qemuNetns = `/proc/${sandbox.vm.pid}/ns/net`;
    const inQemuNetns = (...args: string[]) => execFileSync('nsenter', [`--net=${qemuNetns}`, ...args]).toString();
    expect(readlinkSync(qemuNetns)).not.toBe(readlinkSync('/proc/self/ns/net'));
    expect(inQemuNetns('ip', '-o', 'link', 'show')).toMatch(/tap0_kt/);

    // What CNI's bridge plugin does, in short: a veth whose container end is eth0 in that namespace.
    execFileSync('ip', ['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(sandbox.vm.pid)]);
    execFileSync('ip', ['addr', 'add', '10.251.0.1/24', 'dev', hostEnd]);
    execFileSync('ip', ['link', 'set', hostEnd, 'up']);
    inQemuNetns('ip', 'addr', 'add', '10.251.0.2/24', 'dev', 'eth0');
    inQemuNetns('ip', 'link', 'set', 'eth0', 'mtu', '1400', 'up');
    inQemuNetns('ip', 'route', 'add', 'default', 'via', '10.251.0.1');
    const cniMac = /link\/ether ([0-9a-f:]{17})/.exec(inQemuNetns('ip', '-o', 'link', 'show', 'eth0'))?.[1];

    const { process: p } = await run(['sh', '-c', 'cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu; ip -4 addr show eth0; ip route; ip -o link show lo; ping -c 1 -W 10 10.251.0.1 >/dev/null && echo gateway answers']);
    const [out, exit] = await Promise.all([collect(p.stdout), p.wait()]);
    const seen = out.toString();
    expect(seen).toContain(`${cniMac}\n1400\n`);
    expect(seen).toMatch(/inet 10\.251\.0\.2\/24/);
    expect(seen).toMatch(/default via 10\.251\.0\.1 dev eth0/);
    expect(seen).toContain('gateway answers');
    expect(seen).toMatch(/lo: <LOOPBACK,UP/);
    expect(exit.status).toBe(0);
    expect(inQemuNetns('tc', 'qdisc', 'show', 'dev', 'eth0')).toMatch(/ingress/);

    const s = sandbox;
    sandbox = undefined;
    await s.stop();
    expect(remainsOf(s)).toEqual({ processes: [], mounts: [], paths: [] });
    // The namespace goes with QEMU (the kernel frees it in the background), and the veth with it.
    await eventually(() => !execFileSync('ip', ['-o', 'link', 'show']).toString().includes(hostEnd), 10_000);
  });

  it('leaves a container on loopback when nothing fills the namespace', async () => {
    sandbox = await startSandbox({}, { lateNetwork: true });
    const { process: p } = await run(['ls', '/sys/class/net']);
    const [out, exit] = await Promise.all([collect(p.stdout), p.wait()]);
    expect(out.toString()).toBe('lo\n');
    expect(exit.status).toBe(0);
  });
});

describe('isolation of a sandbox from the host', () => {
  it("resolves symlinks and .. in the guest: no host file outside the share and no other sandbox's share is reachable", async () => {
    const secretDir = mkdtempSync(join(os.tmpdir(), 'kata-ts-secret-'));
    let other: Sandbox | undefined;
    try {
      writeFileSync(join(secretDir, 'marker'), 'host secret\n');
      other = await startSandbox();
      await other.createContainer('victim', { spec: defaultSpec({ args: ['true'] }), rootfs: BUSYBOX_ROOTFS });
      const otherShare = join(testSettings().runRoot, 'shared', other.id, 'victim', 'rootfs');
      expect(existsSync(join(otherShare, 'bin/busybox'))).toBe(true); // it is there, on the host
      const probes = [
        `ln -s ${secretDir}/marker /dev/shm/l1; cat /dev/shm/l1`,
        `cat /../../../..${secretDir}/marker`,
        `ln -s ${otherShare}/etc/passwd /dev/shm/l2; cat /dev/shm/l2`,
        `ls /../../..${otherShare}/bin/busybox`,
        `echo written > /../../..${secretDir}/new`,
      ];
      const { process: p } = await run(['sh', '-c', `${probes.map((c) => `(${c}) 2>&1; echo "rc=$?"`).join('; ')}; echo done`]);
      const [out, exit] = await Promise.all([collect(p.stdout), p.wait()]);
      const seen = out.toString();
      expect(seen).not.toContain('host secret');
      // Every probe failed: what it named does not exist in the guest.
      expect(seen.match(/rc=\d+/g)).toEqual(probes.map(() => expect.not.stringMatching(/^rc=0$/)));
      expect(seen.match(/No such file or directory|nonexistent directory/g)?.length).toBe(probes.length);
      expect(seen).toMatch(/done\n$/);
      expect(exit.status).toBe(0);
      expect(existsSync(join(secretDir, 'new'))).toBe(false);
    } finally {
      await other?.stop();
      rmSync(secretDir, { recursive: true, force: true });
    }
  });

  it("confines virtiofsd and QEMU, keeps the run folder its owner's, and keeps the host's environment out of the guest", async () => {
    process.env.KATA_TS_HOST_ONLY = 'must-not-reach-the-guest';
    try {
      const { process: p } = await run(['env']);
      const [out] = await Promise.all([collect(p.stdout), p.wait()]);
      expect(out.toString()).not.toContain('KATA_TS_HOST_ONLY');
    } finally {
      delete process.env.KATA_TS_HOST_ONLY;
    }
    const status = (pid: number) => readFileSync(`/proc/${pid}/status`, 'utf8');
    const seccomp = (pid: number) => /^Seccomp:\s+(\d)/m.exec(status(pid))?.[1];
    for (const { role, pid } of sandbox!.vm.processes()) {
      if (role === 'vmm') expect(seccomp(pid)).toBe('2'); // QEMU's -sandbox filter
      if (role !== 'virtiofsd') continue;
      // virtiofsd's sandbox: a mount namespace where only the share is, and the process it forks
      // there to serve the guest runs under a seccomp filter.
      expect(readlinkSync(`/proc/${pid}/ns/mnt`)).not.toBe(readlinkSync('/proc/self/ns/mnt'));
      const workers = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      expect(workers.length).toBeGreaterThan(0);
      for (const w of workers) expect(seccomp(w)).toBe('2');
    }
    expect(statSync(sandbox!.vm.runDir).mode & 0o077).toBe(0);
  });
});

describe('the agent vsock listener', () => {
  it('answers over vsock loopback inside the guest', async () => {
    sandbox = await startSandbox({ kernelParams: ['kata_ts.channel=serial,vsock'] });
    // The guest image's own tree has node and the agent bundle, whose check-vsock mode is a vsock client.
    const spec = defaultSpec({ args: ['/usr/bin/node', '/usr/lib/kata-ts/agent.cjs', 'check-vsock', '1024'] });
    await sandbox.createContainer('probe', { spec, rootfs: `${REPO}/build/rootfs.img.tree` });
    const { process } = await sandbox.startContainer('probe');
    const [out, err, exit] = await Promise.all([collect(process.stdout), collect(process.stderr), process.wait()]);
    expect(err.toString()).toBe('');
    expect(exit.status).toBe(0);
    const details = JSON.parse(out.toString()) as { kernelRelease: string; channel: string };
    expect(details.kernelRelease).toMatch(/kata-ts/);
    expect(details.channel).toBe('serial,vsock');
  });
});
