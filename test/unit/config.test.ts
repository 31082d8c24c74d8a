import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import { applyAnnotations, applyConfig, ConfigError, DEFAULT_ENABLED_ANNOTATIONS, KEYS, loadConfig, resolvedKeys, TOOL_KEYS } from '../../shim/src/containerd/config.js';
import { parseJobArgs } from '../../shim/src/job/options.js';
import { DEFAULT_SETTINGS, type SandboxSettings } from '../../shim/src/sandbox/settings.js';

const base: SandboxSettings = { ...DEFAULT_SETTINGS, kernelPath: '/k', imagePath: '/i' };

describe('configuration file', () => {
  it('applies every section to the settings', () => {
    const { settings } = applyConfig(
      base,
      {
        hypervisor: { accel: 'tcg', default_vcpus: 2, default_memory: 512, kernel: '/boot/vmlinux', kernel_params: 'quiet  foo=1' },
        agent: { channel: 'serial', boot_timeout: 45 },
        runtime: { debug: true, shutdown_timeout: 1 },
      },
      'test.toml',
    );
    expect(settings).toMatchObject({ accel: 'tcg', cpus: 2, memoryMiB: 512, kernelPath: '/boot/vmlinux', kernelParams: ['quiet', 'foo=1'] });
    expect(settings).toMatchObject({ agentChannel: 'serial', bootTimeoutMs: 45_000, debug: true, shutdownTimeoutMs: 1000 });
  });

  it('keeps the [job] and [gitlab] sections apart from the sandbox settings', () => {
    const loaded = applyConfig(
      base,
      {
        job: { rootfs: '/r', cpus: 2, memory: 1024, timeout: 90, grace: 2.5, pids_limit: 64, network: 'nat', image: 'docker.io/library/alpine:3' },
        gitlab: { image: 'docker.io/library/debian:12', namespace: 'ci', shell: 'bash' },
      },
      'test.toml',
    );
    expect(loaded.settings).toEqual(base);
    expect(loaded.job).toEqual({ rootfs: '/r', cpus: 2, memoryMiB: 1024, timeoutMs: 90_000, graceMs: 2500, pidsLimit: 64, network: 'nat', image: 'docker.io/library/alpine:3' });
    expect(loaded.gitlab).toEqual({ image: 'docker.io/library/debian:12', namespace: 'ci', shell: 'bash' });
  });

  it.each([
    [{ hypervisor: { acel: 'tcg' } }, 'hypervisor.acel', /unknown key/],
    [{ hypervisor: { accel: 'hvf' } }, 'hypervisor.accel', /one of auto, kvm, tcg/],
    [{ hypervisor: { default_memory: '1G' } }, 'hypervisor.default_memory', /must be a number/],
    [{ hypervisor: { default_memory: 16 } }, 'hypervisor.default_memory', /at least 64/],
    [{ agent: 'serial' }, 'agent', /must be a table/],
    [{ job: { network: 'host' } }, 'job.network', /one of none, nat/],
    [{ job: { memory: '2g' } }, 'job.memory', /must be a number/],
    [{ job: { cpu: 2 } }, 'job.cpu', /unknown key/],
    [{ gitlab: { shell: 1 } }, 'gitlab.shell', /must be a string/],
    [{ runtime: { enable_annotations: ['hypervisor.nope'] } }, 'runtime.enable_annotations', /not a key/],
  ])('rejects %j naming the key', (doc, key, message) => {
    let err: unknown;
    try {
      applyConfig(base, doc as Record<string, unknown>, 'test.toml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).key).toBe(key);
    expect((err as Error).message).toMatch(message);
  });
});

describe('annotations', () => {
  const config = applyConfig(base, {}, 'defaults');

  it('override the keys that are enabled', () => {
    const settings = applyAnnotations(config, { 'io.katacontainers.config.hypervisor.default_memory': '1024', other: 'x' });
    expect(settings.memoryMiB).toBe(1024);
  });

  it('refuse keys that are not enabled, naming the annotation', () => {
    expect(() => applyAnnotations(config, { 'io.katacontainers.config.hypervisor.path': '/tmp/evil-qemu' })).toThrow(
      /io\.katacontainers\.config\.hypervisor\.path: not allowed/,
    );
  });

  it('keep the sizes they set within the configured ceilings, and whole', () => {
    const vcpus = 'io.katacontainers.config.hypervisor.default_vcpus';
    const memory = 'io.katacontainers.config.hypervisor.default_memory';
    expect(applyAnnotations(config, { [vcpus]: '4', [memory]: '4096' })).toMatchObject({ cpus: 4, memoryMiB: 4096 });
    expect(() => applyAnnotations(config, { [vcpus]: '64' })).toThrow(/default_vcpus: asks for 64 vCPUs, more than hypervisor.default_maxvcpus \(4\)/);
    expect(() => applyAnnotations(config, { [memory]: '1e9' })).toThrow(/default_memory: asks for 1000000000 MiB, more than hypervisor.default_maxmemory/);
    expect(() => applyAnnotations(config, { [vcpus]: '1.5' })).toThrow(/must be a whole number/);
    expect(() => applyAnnotations(config, { [memory]: '' })).toThrow(/must be a number/);
  });

  it('refuse unknown keys and bad values', () => {
    expect(() => applyAnnotations(config, { 'io.katacontainers.config.hypervisor.bogus': '1' })).toThrow(/unknown annotation/);
    expect(() => applyAnnotations(config, { 'io.katacontainers.config.hypervisor.default_vcpus': 'many' })).toThrow(/must be a number/);
  });
});

describe('the shipped configuration file', () => {
  it('states exactly the built-in defaults', () => {
    const shipped = loadConfig(base, join(import.meta.dirname, '../../shim/configuration.toml'));
    expect(shipped.settings).toEqual(base);
    expect(shipped.enabledAnnotations).toEqual(DEFAULT_ENABLED_ANNOTATIONS);
    const args = ['--', 'true'];
    expect(parseJobArgs(args, { rootfs: '/r', ...shipped.job })).toEqual(parseJobArgs(args, { rootfs: '/r' }));
  });
});

describe('finding the file', () => {
  it('takes the first fallback that exists, and the defaults when none does', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-config-'));
    try {
      const host = join(dir, 'etc.toml');
      const shipped = join(dir, 'shipped.toml');
      writeFileSync(shipped, '[hypervisor]\ndefault_vcpus = 3\n');
      expect(loadConfig(base, undefined, [host, shipped])).toMatchObject({ source: shipped, settings: { cpus: 3 } });
      writeFileSync(host, '[hypervisor]\ndefault_vcpus = 2\n');
      expect(loadConfig(base, undefined, [host, shipped])).toMatchObject({ source: host, settings: { cpus: 2 } });
      expect(loadConfig(base, undefined, [join(dir, 'none.toml')])).toMatchObject({ source: 'defaults', settings: base });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the resolved configuration (kata-ts env)', () => {
  const shippedPath = join(import.meta.dirname, '../../shim/configuration.toml');

  it('shows every key the shipped file sets as the file states it, from that file', () => {
    const doc = parse(readFileSync(shippedPath, 'utf8')) as Record<string, Record<string, unknown>>;
    const keys = new Map(resolvedKeys(loadConfig(base, shippedPath)).map((k) => [k.key, k]));
    for (const [section, table] of Object.entries(doc))
      for (const [name, value] of Object.entries(table)) {
        const key = `${section}.${name}`;
        expect({ key, value: keys.get(key)?.value, origin: keys.get(key)?.origin }).toEqual({ key, value: typeof value === 'bigint' ? Number(value) : value, origin: shippedPath });
      }
  });

  it('lists every key once; without a file all are defaults, in the file’s terms', () => {
    const keys = resolvedKeys(loadConfig(base, undefined, []));
    expect(keys.map((k) => k.key)).toEqual([...Object.keys(KEYS), ...Object.keys(TOOL_KEYS)]);
    expect(new Set(keys.map((k) => k.origin))).toEqual(new Set(['default']));
    expect(keys.find((k) => k.key === 'agent.boot_timeout')?.value).toBe(60);
    expect(keys.find((k) => k.key === 'job.memory')?.value).toBeUndefined();
  });

  it('names the file of each value it set and marks what annotations may override', () => {
    const config = applyConfig(base, { agent: { boot_timeout: 45 }, job: { timeout: 90 }, runtime: { enable_annotations: ['hypervisor.default_memory'] } }, '/etc/x.toml');
    const key = (k: string) => resolvedKeys(config).find((r) => r.key === k);
    expect(key('agent.boot_timeout')).toEqual({ key: 'agent.boot_timeout', value: 45, origin: '/etc/x.toml', annotation: false });
    expect(key('job.timeout')).toMatchObject({ value: 90, origin: '/etc/x.toml' });
    expect(key('hypervisor.default_memory')).toMatchObject({ origin: 'default', annotation: true });
    expect(key('hypervisor.default_vcpus')).toMatchObject({ annotation: false });
  });
});
