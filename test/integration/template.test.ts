// Sandboxes restored from templates, with real VMs: the first start makes the
// template, later ones restore from it and run containers as a booted sandbox
// does; clones do not share randomness and have the host's clock; a corrupt
// template, a stale one and a maker killed half way all end in a cold boot or
// a new template, never in a broken sandbox or a half-written template.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/log.js';
import { defaultSpec, processSpec } from '../../shim/src/sandbox/default-spec.js';
import { ensureRunRoot, Sandbox } from '../../shim/src/sandbox/sandbox.js';
import { sha256Of, TEMPLATE_RECORD, type TemplateRecord } from '../../shim/src/template/template-store.js';
import { eventually, sandboxProcesses } from '../helpers/host-state.js';
import { BUSYBOX_ROOTFS, collect, REPO, remainsOf, testSettings } from '../helpers/sandbox-harness.js';

const templatePath = mkdtempSync(join(tmpdir(), 'kata-ts-templates-'));
const logLines: string[] = [];
const log = createLogger({ level: 'info', write: (line) => void logLines.push(line) });
const started: Sandbox[] = [];
let counter = 0;

async function start(overrides: Parameters<typeof testSettings>[0] = {}): Promise<Sandbox> {
  const settings = testSettings({ templateEnabled: true, templatePath, ...overrides });
  await ensureRunRoot(settings);
  const sandbox = await Sandbox.start(`tpl${process.pid}-${++counter}`, settings, log, { lateNetwork: true });
  started.push(sandbox);
  return sandbox;
}

async function run(sandbox: Sandbox, args: string[], stdin?: string): Promise<{ status: number; out: string }> {
  const id = `c${++counter}`;
  await sandbox.createContainer(id, { spec: defaultSpec({ args }), rootfs: BUSYBOX_ROOTFS });
  const { process } = await sandbox.startContainer(id);
  const out = collect(process.stdout);
  if (stdin !== undefined) await process.pipeFrom([Buffer.from(stdin)]);
  const exit = await process.wait();
  return { status: exit.status, out: (await out).toString() };
}

const templates = () => readdirSync(templatePath).filter((e) => /^[0-9a-f]{16}$/.test(e));

afterEach(async () => {
  for (const s of started.splice(0)) {
    await s.stop();
    expect(remainsOf(s)).toEqual({ processes: [], mounts: [], paths: [] });
  }
});

afterAll(() => rmSync(templatePath, { recursive: true, force: true }));

describe('a sandbox restored from a template', () => {
  it('is made at first use; clones then run containers, execs and stdin like a booted sandbox, with the host’s clock and their own randomness', async () => {
    const first = await start();
    expect(first.timeline.boot).toBe('template');
    expect(templates()).toHaveLength(1);
    expect(logLines.join('\n')).toMatch(/no sandbox template for this VM yet; making it/);
    const second = await start();
    expect(second.timeline).toMatchObject({ boot: 'template', kernelStartMs: 0 });
    expect(second.timeline.restoredMs).toBeGreaterThan(0);
    expect(second.timeline.sandboxReadyMs).toBeGreaterThanOrEqual(second.timeline.agentAnsweredMs);

    const script = 'cat; date +%s; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; cat /proc/sys/kernel/random/boot_id';
    const [a, b] = await Promise.all([run(first, ['sh', '-c', script], 'from stdin\n'), run(second, ['sh', '-c', script], 'from stdin\n')]);
    for (const r of [a, b]) {
      expect(r.status).toBe(0);
      const [echoed, date] = r.out.split('\n');
      expect(echoed).toBe('from stdin');
      expect(Math.abs(Number(date) - Date.now() / 1000)).toBeLessThan(10);
    }
    // The kernel's generator differs (reseeded), and so does the boot id it makes at its first read.
    expect(a.out.split('\n')[2]).toMatch(/^[0-9a-f]{32}$/);
    expect(a.out.split('\n')[2]).not.toBe(b.out.split('\n')[2]);
    expect(a.out.split('\n')[3]).not.toBe(b.out.split('\n')[3]);
    // The agent's own generator: the same host input to both, still different output.
    const same = { entropy: Buffer.alloc(64, 7), wallClockMs: Date.now(), macs: [], sharedFs: true };
    const [sa, sb] = await Promise.all([first.agent.call('setupClone', same), second.agent.call('setupClone', same)]);
    expect(Buffer.from(sa.randomSample).toString('hex')).not.toBe(Buffer.from(sb.randomSample).toString('hex'));

    const { id } = await (async () => {
      const id = `c${++counter}`;
      await second.createContainer(id, { spec: defaultSpec({ args: ['sleep', '100'] }), rootfs: BUSYBOX_ROOTFS });
      await second.startContainer(id);
      return { id };
    })();
    const { process: exec } = await second.exec(id, 'e1', processSpec({ args: ['sh', '-c', 'echo from-exec; exit 3'] }));
    const out = collect(exec.stdout);
    expect((await exec.wait()).status).toBe(3);
    expect((await out).toString()).toBe('from-exec\n');
  });

  it('boots cold, with the reason logged, when the template’s state is corrupt, and the next sandbox makes it again', async () => {
    await start().then((s) => s.stop());
    const [key] = templates();
    const dir = join(templatePath, key!);
    // Damage the state but keep the record consistent, so only the restore can tell.
    const state = readFileSync(join(dir, 'state'));
    state.fill(0xa5, 64, state.length - 64);
    writeFileSync(join(dir, 'state'), state);
    const record = JSON.parse(readFileSync(join(dir, TEMPLATE_RECORD), 'utf8')) as TemplateRecord;
    writeFileSync(join(dir, TEMPLATE_RECORD), JSON.stringify({ ...record, stateSha256: await sha256Of(join(dir, 'state')) }));
    logLines.length = 0;
    const cold = await start();
    expect(cold.timeline.boot).toBe('cold');
    expect(logLines.join('\n')).toMatch(/restore from the sandbox template failed; booting cold.*error=/);
    expect((await run(cold, ['echo', 'cold'])).out).toBe('cold\n');
    expect(existsSync(dir)).toBe(false);
    const remade = await start();
    expect(remade.timeline.boot).toBe('template');
    expect(templates()).toEqual([key]);
  });

  it('makes a new template when an input changed, and removes the stale one', async () => {
    const kernelDir = mkdtempSync(join(tmpdir(), 'kata-ts-kernel-'));
    try {
      const kernelPath = join(kernelDir, 'vmlinux');
      copyFileSync(join(REPO, 'build/vmlinux'), kernelPath);
      await start({ kernelPath }).then((s) => s.stop());
      const before = templates();
      utimesSync(kernelPath, new Date(), new Date(Date.now() + 60_000));
      const again = await start({ kernelPath });
      expect(again.timeline.boot).toBe('template');
      const after = templates();
      const added = after.filter((k) => !before.includes(k));
      expect(added).toHaveLength(1);
      expect(after.length).toBe(before.length);
    } finally {
      rmSync(kernelDir, { recursive: true, force: true });
    }
  });

  it('leaves no template and no VM when its maker is killed half way; the next start makes it whole', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-crash-'));
    const store = join(dir, 'templates');
    try {
      writeFileSync(join(dir, 'config.toml'), `[factory]\nenable_template = true\ntemplate_path = "${store}"\n`);
      const job = spawn(join(REPO, 'build/bin/kata-ts'), ['job', 'run', '--config', join(dir, 'config.toml'), '--rootfs', BUSYBOX_ROOTFS, '--', 'true'], { stdio: 'ignore' });
      const partial = () => (existsSync(store) ? readdirSync(store).filter((e) => e.endsWith('.partial')) : []);
      // Killed while the template VM boots: its folder exists, the template does not yet.
      await eventually(() => partial().length === 1 && existsSync(join(store, partial()[0]!, 'ram')), 30_000);
      job.kill('SIGKILL');
      await new Promise((r) => job.once('exit', r));
      await eventually(() => !sandboxProcesses().some((p) => p.cmd.includes('kata-ts-template-')), 10_000);
      expect(readdirSync(store).filter((e) => /^[0-9a-f]{16}$/.test(e))).toEqual([]);
      // The next job sweeps what the killed one left, makes the template whole and restores from it.
      const next = spawn(join(REPO, 'build/bin/kata-ts'), ['job', 'run', '--config', join(dir, 'config.toml'), '--rootfs', BUSYBOX_ROOTFS, '--', 'true'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      next.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise((r) => next.once('exit', r));
      expect(code, stderr).toBe(0);
      expect(readdirSync(store).filter((e) => /^[0-9a-f]{16}$/.test(e))).toHaveLength(1);
      expect(readdirSync(store).filter((e) => e.endsWith('.partial') || e.endsWith('.lock'))).toEqual([]);
      expect(existsSync(`/run/kata-ts/template/${readdirSync(store)[0]}.${job.pid}`)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
