// The GitLab Runner custom executor driver, driven exactly as the runner's
// custom executor protocol does it (gitlab-runner is not packaged for Debian
// 12): its stages, arguments, script files, CUSTOM_ENV_ variables and failure
// exit codes, against a private containerd.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, PrivateContainerd, REPO } from '../helpers/containerd.js';
import { eventually, leftovers, sandboxProcesses } from '../helpers/host-state.js';

const KATA_TS = join(REPO, 'build/bin/kata-ts');
const NAMESPACE = 'kata-ts-gitlab';
const BUILD_FAILURE = 77;
const SYSTEM_FAILURE = 78;

describe('kata-ts gitlab (custom executor)', () => {
  let ctrd: PrivateContainerd;
  let dir: string;
  let script = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kata-ts-gitlab-'));
    ctrd = await PrivateContainerd.start();
    await ctrd.importImage(BUSYBOX_IMAGE_TAR, NAMESPACE);
  });
  afterAll(async () => {
    await ctrd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await eventually(() => leftovers().length === 0, 15_000).catch(() => undefined);
    expect(leftovers()).toEqual([]);
    expect((await ctrd.ctr(['containers', 'ls', '-q'], { namespace: NAMESPACE })).stdout.toString()).toBe('');
  });

  /** One driver call: `<exec> <args…>` with the runner's environment, as [runners.custom] configures it. */
  function driver(jobId: number, args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    const env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CUSTOM_ENV_CI_JOB_ID: String(jobId),
      CUSTOM_ENV_CI_RUNNER_ID: '7',
      CUSTOM_ENV_CI_JOB_IMAGE: BUSYBOX_IMAGE,
      BUILD_FAILURE_EXIT_CODE: String(BUILD_FAILURE),
      SYSTEM_FAILURE_EXIT_CODE: String(SYSTEM_FAILURE),
      ...extraEnv,
    };
    const [stage, ...rest] = args;
    return new Promise((resolve, reject) => {
      const p = spawn(KATA_TS, ['gitlab', stage!, '--containerd', ctrd.address, ...rest], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      p.once('error', reject);
      p.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  }

  /** A stage script file, as the runner writes one for each stage. */
  const scriptFile = (body: string) => {
    const file = join(dir, `script-${++script}`);
    writeFileSync(file, `set -e\n${body}\n`);
    return file;
  };

  it('runs a job’s stages in one VM: state carries over, a failing step is the build’s failure, after_script still runs', async () => {
    const config = await driver(1, ['config']);
    expect(config.code).toBe(0);
    expect(JSON.parse(config.stdout)).toMatchObject({ builds_dir: '/builds', cache_dir: '/cache', builds_dir_is_shared: false, driver: { name: 'kata-ts' } });
    try {
      expect((await driver(1, ['prepare'])).code).toBe(0);
      const sources = await driver(1, ['run', scriptFile('mkdir -p /builds/group/project && echo fetched > /builds/group/project/src.txt'), 'get_sources']);
      expect(sources.code).toBe(0);
      const step = await driver(1, ['run', scriptFile('cat /builds/group/project/src.txt\nuname -r\nfalse\necho not reached'), 'step_script']);
      expect(step.stdout).toMatch(/^fetched\n.*kata-ts\n$/);
      expect(step.code).toBe(BUILD_FAILURE);
      const after = await driver(1, ['run', scriptFile('cat /builds/group/project/src.txt; echo after'), 'after_script']);
      expect([after.code, after.stdout]).toEqual([0, 'fetched\nafter\n']);
    } finally {
      expect((await driver(1, ['cleanup'])).code).toBe(0);
    }
  });

  it('exits with the system failure code when the VM dies mid-job, and cleanup still removes everything', async () => {
    try {
      expect((await driver(2, ['prepare'])).code).toBe(0);
      const qemu = sandboxProcesses().find((p) => p.cmd.includes('qemu-system') && p.cmd.includes('gitlab-7-2@'));
      expect(qemu).toBeDefined();
      process.kill(qemu!.pid, 'SIGKILL');
      await eventually(async () => !(await ctrd.ctr(['task', 'ls'], { namespace: NAMESPACE })).stdout.toString().includes('RUNNING'), 15_000);
      const step = await driver(2, ['run', scriptFile('echo should not run'), 'step_script']);
      expect(step.code).toBe(SYSTEM_FAILURE);
      expect(step.stderr).toContain('the job’s VM is gone'.replace('’', "'"));
    } finally {
      expect((await driver(2, ['cleanup'])).code).toBe(0);
    }
  });

  it('with --network nat, a job reaches a server on the host’s address (as get_sources reaches GitLab), never the host’s loopback', async () => {
    const hostAddress = Object.values(networkInterfaces())
      .flat()
      .find((a) => a?.family === 'IPv4' && !a.internal)?.address;
    expect(hostAddress, 'the host needs an address besides loopback').toBeDefined();
    const open = net.createServer((c) => c.end('hello from the host\n'));
    const loopbackOnly = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => open.listen(0, '0.0.0.0', r));
    await new Promise<void>((r) => loopbackOnly.listen(0, '127.0.0.1', r));
    const port = (open.address() as net.AddressInfo).port;
    const lo = (loopbackOnly.address() as net.AddressInfo).port;
    try {
      expect((await driver(4, ['prepare', '--network', 'nat'])).code).toBe(0);
      const body = `cat /etc/resolv.conf\nnc -w 3 ${hostAddress} ${port} </dev/null\nnc -w 3 10.0.2.2 ${lo} </dev/null || echo loopback unreachable`;
      const r = await driver(4, ['run', scriptFile(body), 'get_sources']);
      expect([r.code, r.stdout]).toEqual([0, 'nameserver 10.0.2.3\nhello from the host\nloopback unreachable\n']);
    } finally {
      expect((await driver(4, ['cleanup'])).code).toBe(0);
      open.close();
      loopbackOnly.close();
    }
  });

  it('fails prepare with the system failure code for an image containerd does not have', async () => {
    const r = await driver(3, ['prepare'], { CUSTOM_ENV_CI_JOB_IMAGE: 'docker.io/library/no-such:1' });
    expect(r.code).toBe(SYSTEM_FAILURE);
    expect(r.stderr).toContain("cannot start the job's VM from docker.io/library/no-such:1");
    expect((await driver(3, ['cleanup'])).code).toBe(0);
  });
});
