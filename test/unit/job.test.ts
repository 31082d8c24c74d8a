// The pure parts of `kata-ts job run`: its options, its report and JUnit file, its spec.
import { describe, expect, it } from 'vitest';
import { jobSpec, mergeEnv } from '../../shim/src/job/job-spec.js';
import { configPathOf, optionsPart, parseDuration, parseJobArgs, parseSizeMiB } from '../../shim/src/job/options.js';
import { buildReport, renderJunit, xmlText } from '../../shim/src/job/report.js';
import { jobSettings } from '../../shim/src/job/run-job.js';
import { DEFAULT_SETTINGS } from '../../shim/src/sandbox/settings.js';

const parse = (args: string[]) => parseJobArgs(args, { rootfs: '/default/rootfs' });

describe('job options', () => {
  it('reads durations and sizes the way CI operators write them', () => {
    expect([parseDuration('90', 't'), parseDuration('1.5m', 't'), parseDuration('500ms', 't'), parseDuration('2h', 't')]).toEqual([90_000, 90_000, 500, 7_200_000]);
    expect([parseSizeMiB('512m', 'm'), parseSizeMiB('2g', 'm'), parseSizeMiB('1024', 'm'), parseSizeMiB('2GiB', 'm')]).toEqual([512, 2048, 1024, 2048]);
    expect(() => parseDuration('soon', '--timeout')).toThrow('--timeout "soon"');
    expect(() => parseDuration('0s', '--timeout')).toThrow('more than zero');
    expect(() => parseSizeMiB('32m', '--memory')).toThrow('at least 64 MiB');
  });

  it('takes every option, repeatable ones repeated', () => {
    const o = parse(['--workspace', '/w', '--copy-workspace', '--artifact', 'dist', '--artifact', 'out/x', '--cpus', '2', '--memory', '1g', '--timeout', '10m', '--pids-limit', '100', '-e', 'A=1', '--env', 'B=x=y', '--secret', 'tok=/s/t', '--report', '/r.json', '--junit', '/j.xml', '--', 'make', 'test']);
    expect(o).toMatchObject({ command: ['make', 'test'], rootfs: '/default/rootfs', workspace: '/w', copyWorkspace: true, artifacts: ['dist', 'out/x'], cpus: 2, memoryMiB: 1024, timeoutMs: 600_000, pidsLimit: 100, env: ['A=1', 'B=x=y'], network: 'none', reportPath: '/r.json', junitPath: '/j.xml', name: 'make test' });
    expect([...o.secrets]).toEqual([['tok', '/s/t']]);
  });

  it('takes its defaults from the [job] section, the options over them', () => {
    const defaults = { rootfs: '/default/rootfs', cpus: 2, memoryMiB: 512, timeoutMs: 60_000, graceMs: 1000, pidsLimit: 10, network: 'nat' as const, image: 'docker.io/library/alpine:3', containerd: '/c.sock', namespace: 'ci' };
    expect(parseJobArgs(['--', 'true'], defaults)).toMatchObject({ cpus: 2, memoryMiB: 512, timeoutMs: 60_000, graceMs: 1000, pidsLimit: 10, network: 'nat', image: 'docker.io/library/alpine:3', containerd: { address: '/c.sock', namespace: 'ci' } });
    const o = parseJobArgs(['--cpus', '1', '--memory', '1g', '--timeout', '5s', '--grace', '2s', '--pids-limit', '5', '--network', 'none', '--rootfs', '/mine', '--', 'true'], defaults);
    expect(o).toMatchObject({ cpus: 1, memoryMiB: 1024, timeoutMs: 5000, graceMs: 2000, pidsLimit: 5, network: 'none', rootfs: '/mine' });
    // A root filesystem given on the command line wins over the configured image.
    expect(o.image).toBeUndefined();
  });

  it('reads --config and its own options only before --', () => {
    expect(configPathOf(['--config', '/a.toml', '--', 'x'])).toBe('/a.toml');
    expect(configPathOf(['--config=/b.toml', '--', 'x'])).toBe('/b.toml');
    expect(configPathOf(['--', 'tool', '--config', '/not-ours'])).toBeUndefined();
    expect(optionsPart(['--debug', '--', 'make', '--help'])).toEqual(['--debug']);
    expect(parse(['--network', 'nat', '--', 'true']).network).toBe('nat');
  });

  it('names the option that is wrong', () => {
    expect(() => parse(['--rootfs', '/r', '--image-tar', '/i.tar', '--', 'true'])).toThrow('give one');
    expect(() => parse(['true'].slice(1))).toThrow('no command given');
    expect(() => parse(['--network', 'host', '--', 'true'])).toThrow('--network "host": the modes are none');
    expect(() => parse(['--copy-workspace', '--', 'true'])).toThrow('--copy-workspace needs --workspace');
    expect(() => parse(['--workspace', '/w', '--artifact', '../etc', '--', 'true'])).toThrow('must be a path inside the workspace');
    expect(() => parse(['--workspace', '/w', '--artifact', '/etc', '--', 'true'])).toThrow('must be a path inside the workspace');
    expect(() => parse(['--env', 'NOVALUE', '--', 'true'])).toThrow('must be NAME=VALUE');
    expect(() => parse(['--secret', 'a/b=/f', '--', 'true'])).toThrow('--secret "a/b=/f"');
    expect(() => parse(['--secret', 'a=/f', '--secret', 'a=/g', '--', 'true'])).toThrow('given twice');
    expect(() => parse(['--cpus', '0', '--', 'true'])).toThrow('--cpus "0"');
    expect(() => parse(['--bogus', '--', 'true'])).toThrow(/bogus/);
  });
});

describe('job report', () => {
  const base = { name: 'n', command: ['c'], startedAt: new Date(0), phasesMs: { boot: 1, job: 2500 }, timedOut: false, oomKilled: false };

  it('gives the job’s status, 124 for a timeout and 125 for a runtime failure', () => {
    expect(buildReport({ ...base, status: 0 })).toMatchObject({ outcome: 'succeeded', exitCode: 0 });
    expect(buildReport({ ...base, status: 137, oomKilled: true })).toMatchObject({ outcome: 'failed', exitCode: 137, signal: 9, oomKilled: true });
    expect(buildReport({ ...base, status: 143, timedOut: true })).toMatchObject({ outcome: 'timed-out', exitCode: 124, timedOut: true });
    expect(buildReport({ ...base, runtimeError: 'no rootfs' })).toMatchObject({ outcome: 'runtime-failure', exitCode: 125, error: 'no rootfs' });
  });

  it('writes JUnit with the failure or error and escaped text', () => {
    const xml = renderJunit(buildReport({ ...base, name: 'a<b & "c"', status: 2 }), 'out\u0001put <x>');
    expect(xml).toContain('name="a&lt;b &amp; &quot;c&quot;"');
    expect(xml).toContain('<failure message="exit status 2" type="exit"/>');
    expect(xml).toContain('<system-out>out\ufffdput &lt;x&gt;</system-out>');
    expect(xml).toContain('time="2.500"');
    expect(renderJunit(buildReport({ ...base, runtimeError: 'boot failed' }), '')).toContain('errors="1"');
    expect(xmlText("it's")).toBe('it&apos;s');
  });
});

describe('job spec', () => {
  it('lets the job’s variables override the image’s, keeping one per name', () => {
    expect(mergeEnv(['PATH=/bin', 'A=image', 'B=1', 'A=job'])).toEqual(['PATH=/bin', 'A=job', 'B=1']);
  });

  it('runs in /workspace with the secrets read-only and the caps set', () => {
    const spec = jobSpec({ command: ['make'], env: ['A=1'], workspaceSource: '/host/w', secretsSource: '/host/s', memoryLimitBytes: 64 << 20, pidsLimit: 50 }) as {
      process: { cwd: string; env: string[]; args: string[] };
      mounts: { destination: string; source: string; options: string[] }[];
      linux: { resources: { memory: { limit: number }; pids: { limit: number } } };
    };
    expect(spec.process).toMatchObject({ cwd: '/workspace', args: ['make'] });
    expect(spec.process.env).toEqual(expect.arrayContaining(['A=1', 'CI_WORKSPACE=/workspace']));
    expect(spec.mounts.find((m) => m.destination === '/workspace')).toMatchObject({ source: '/host/w', options: ['rbind', 'rw'] });
    expect(spec.mounts.find((m) => m.destination === '/run/secrets')?.options).toContain('ro');
    expect(spec.linux.resources.memory.limit).toBe(64 << 20);
    expect(spec.linux.resources.pids.limit).toBe(50);
  });

  it('asks the sandbox for user-mode NAT with --network nat only', () => {
    const base = { ...DEFAULT_SETTINGS, kernelPath: '/k', imagePath: '/i' };
    expect(jobSettings(base, parse(['--network', 'nat', '--', 'true'])).userNat).toBe(true);
    expect(jobSettings({ ...base, userNat: true }, parse(['--', 'true'])).userNat).toBe(false);
  });
});
