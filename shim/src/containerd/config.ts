// The shim's configuration file (TOML). Every key, its default and what it
// does is in docs/configuration.md; an unknown key or a value of the wrong
// type is an error that names the key.
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'smol-toml';
import type { AccelSetting, ChannelSetting } from '../hypervisor/accel.js';
import type { SandboxSettings } from '../sandbox/settings.js';

export const DEFAULT_CONFIG_PATH = '/etc/kata-ts/configuration.toml';
export const ANNOTATION_PREFIX = 'io.katacontainers.config.';

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`configuration ${key}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Kind = 'string' | 'number' | 'boolean' | 'strings';
interface KeySpec {
  kind: Kind;
  apply: (s: SandboxSettings, v: never) => void;
  /** The value in the file's terms (seconds, a string of words), for `kata-ts env`. */
  show: (c: LoadedConfig) => unknown;
  oneOf?: readonly string[];
  min?: number;
  /** Whole numbers only (vCPUs, MiB). */
  integer?: boolean;
}

const secs = (v: number) => v * 1000;
const inSecs = (ms: number) => ms / 1000;
/** `section.key` → how it lands in the settings. Annotations use the same names. */
export const KEYS: Record<string, KeySpec> = {
  'hypervisor.path': { kind: 'string', apply: (s, v: string) => (s.qemuBinary = v), show: (c) => c.settings.qemuBinary },
  'hypervisor.virtio_fs_daemon': { kind: 'string', apply: (s, v: string) => (s.virtiofsdBinary = v), show: (c) => c.settings.virtiofsdBinary },
  'hypervisor.firmware': { kind: 'string', apply: (s, v: string) => (s.firmware = v), show: (c) => c.settings.firmware },
  'hypervisor.kernel': { kind: 'string', apply: (s, v: string) => (s.kernelPath = v), show: (c) => c.settings.kernelPath },
  'hypervisor.image': { kind: 'string', apply: (s, v: string) => (s.imagePath = v), show: (c) => c.settings.imagePath },
  'hypervisor.kernel_params': { kind: 'string', apply: (s, v: string) => (s.kernelParams = v.split(/\s+/).filter(Boolean)), show: (c) => c.settings.kernelParams.join(' ') },
  'hypervisor.accel': { kind: 'string', oneOf: ['auto', 'kvm', 'tcg'], apply: (s, v: AccelSetting) => (s.accel = v), show: (c) => c.settings.accel },
  'hypervisor.default_vcpus': { kind: 'number', min: 1, integer: true, apply: (s, v: number) => (s.cpus = v), show: (c) => c.settings.cpus },
  'hypervisor.default_maxvcpus': { kind: 'number', min: 1, integer: true, apply: (s, v: number) => (s.maxCpus = v), show: (c) => c.settings.maxCpus },
  'hypervisor.default_memory': { kind: 'number', min: 64, integer: true, apply: (s, v: number) => (s.memoryMiB = v), show: (c) => c.settings.memoryMiB },
  'hypervisor.default_maxmemory': { kind: 'number', min: 64, integer: true, apply: (s, v: number) => (s.maxMemoryMiB = v), show: (c) => c.settings.maxMemoryMiB },
  'hypervisor.tcg_translation_buffer': { kind: 'number', min: 8, apply: (s, v: number) => (s.tcgTranslationBufferMiB = v), show: (c) => c.settings.tcgTranslationBufferMiB },
  'hypervisor.virtio_fs_cache': { kind: 'string', oneOf: ['auto', 'always', 'none'], apply: (s, v: 'auto') => (s.virtiofsCache = v), show: (c) => c.settings.virtiofsCache },
  'hypervisor.disable_vhost_net': { kind: 'boolean', apply: (s, v: boolean) => (s.disableVhostNet = v), show: (c) => c.settings.disableVhostNet },
  'agent.channel': { kind: 'string', oneOf: ['auto', 'vsock', 'serial'], apply: (s, v: ChannelSetting) => (s.agentChannel = v), show: (c) => c.settings.agentChannel },
  'agent.debug_console_enabled': { kind: 'boolean', apply: (s, v: boolean) => (s.debugConsoleEnabled = v), show: (c) => c.settings.debugConsoleEnabled },
  'agent.boot_timeout': { kind: 'number', min: 1, apply: (s, v: number) => (s.bootTimeoutMs = secs(v)), show: (c) => inSecs(c.settings.bootTimeoutMs) },
  'agent.call_timeout': { kind: 'number', min: 1, apply: (s, v: number) => (s.callTimeoutMs = secs(v)), show: (c) => inSecs(c.settings.callTimeoutMs) },
  'agent.hung_timeout': { kind: 'number', min: 0, apply: (s, v: number) => (s.hungTimeoutMs = secs(v)), show: (c) => inSecs(c.settings.hungTimeoutMs) },
  'factory.enable_template': { kind: 'boolean', apply: (s, v: boolean) => (s.templateEnabled = v), show: (c) => c.settings.templateEnabled },
  'factory.template_path': { kind: 'string', apply: (s, v: string) => (s.templatePath = v), show: (c) => c.settings.templatePath },
  'runtime.shutdown_timeout': { kind: 'number', min: 0, apply: (s, v: number) => (s.shutdownTimeoutMs = secs(v)), show: (c) => inSecs(c.settings.shutdownTimeoutMs) },
  'runtime.output_flush_timeout': { kind: 'number', min: 0.1, apply: (s, v: number) => (s.outputFlushMs = Math.round(secs(v))), show: (c) => inSecs(c.settings.outputFlushMs) },
  'runtime.run_root': { kind: 'string', apply: (s, v: string) => (s.runRoot = v), show: (c) => c.settings.runRoot },
  'runtime.internetworking_model': { kind: 'string', oneOf: ['tcfilter', 'none'], apply: (s, v: 'tcfilter') => (s.networkModel = v), show: (c) => c.settings.networkModel },
  'runtime.host_network': { kind: 'string', oneOf: ['refuse', 'isolate'], apply: (s, v: 'refuse') => (s.hostNetwork = v), show: (c) => c.settings.hostNetwork },
  'runtime.user_nat': { kind: 'boolean', apply: (s, v: boolean) => (s.userNat = v), show: (c) => c.settings.userNat },
  'runtime.debug': { kind: 'boolean', apply: (s, v: boolean) => (s.debug = s.debug || v), show: (c) => c.settings.debug },
  'runtime.enable_annotations': { kind: 'strings', apply: () => undefined, show: (c) => c.enabledAnnotations },
};

/** Defaults of `kata-ts job run`, from the [job] section; its options override them. */
export interface JobDefaults {
  rootfs?: string;
  image?: string;
  layerCache?: string;
  containerd?: string;
  namespace?: string;
  cpus?: number;
  memoryMiB?: number;
  timeoutMs?: number;
  graceMs?: number;
  pidsLimit?: number;
  network?: 'none' | 'nat';
}

/** Defaults of `kata-ts gitlab`, from the [gitlab] section; its options override them. */
export interface GitlabDefaults {
  image?: string;
  containerd?: string;
  namespace?: string;
  shell?: string;
  network?: 'none' | 'nat';
}

interface ToolDefaults {
  job: JobDefaults;
  gitlab: GitlabDefaults;
}

interface ToolKeySpec extends Omit<KeySpec, 'apply'> {
  apply: (d: ToolDefaults, v: never) => void;
}

/** Keys of the command-line tools' sections; annotations cannot set these. */
export const TOOL_KEYS: Record<string, ToolKeySpec> = {
  'job.rootfs': { kind: 'string', apply: (d, v: string) => (d.job.rootfs = v), show: (c) => c.job.rootfs },
  'job.image': { kind: 'string', apply: (d, v: string) => (d.job.image = v), show: (c) => c.job.image },
  'job.layer_cache': { kind: 'string', apply: (d, v: string) => (d.job.layerCache = v), show: (c) => c.job.layerCache },
  'job.containerd': { kind: 'string', apply: (d, v: string) => (d.job.containerd = v), show: (c) => c.job.containerd },
  'job.namespace': { kind: 'string', apply: (d, v: string) => (d.job.namespace = v), show: (c) => c.job.namespace },
  'job.cpus': { kind: 'number', min: 1, integer: true, apply: (d, v: number) => (d.job.cpus = v), show: (c) => c.job.cpus },
  'job.memory': { kind: 'number', min: 64, integer: true, apply: (d, v: number) => (d.job.memoryMiB = v), show: (c) => c.job.memoryMiB },
  'job.timeout': { kind: 'number', min: 0.001, apply: (d, v: number) => (d.job.timeoutMs = Math.round(secs(v))), show: (c) => c.job.timeoutMs === undefined ? undefined : inSecs(c.job.timeoutMs) },
  'job.grace': { kind: 'number', min: 0.001, apply: (d, v: number) => (d.job.graceMs = Math.round(secs(v))), show: (c) => c.job.graceMs === undefined ? undefined : inSecs(c.job.graceMs) },
  'job.pids_limit': { kind: 'number', min: 1, integer: true, apply: (d, v: number) => (d.job.pidsLimit = v), show: (c) => c.job.pidsLimit },
  'job.network': { kind: 'string', oneOf: ['none', 'nat'], apply: (d, v: 'none') => (d.job.network = v), show: (c) => c.job.network },
  'gitlab.image': { kind: 'string', apply: (d, v: string) => (d.gitlab.image = v), show: (c) => c.gitlab.image },
  'gitlab.containerd': { kind: 'string', apply: (d, v: string) => (d.gitlab.containerd = v), show: (c) => c.gitlab.containerd },
  'gitlab.namespace': { kind: 'string', apply: (d, v: string) => (d.gitlab.namespace = v), show: (c) => c.gitlab.namespace },
  'gitlab.shell': { kind: 'string', apply: (d, v: string) => (d.gitlab.shell = v), show: (c) => c.gitlab.shell },
  'gitlab.network': { kind: 'string', oneOf: ['none', 'nat'], apply: (d, v: 'none') => (d.gitlab.network = v), show: (c) => c.gitlab.network },
};

/** Keys annotations may override unless the file says otherwise. */
export const DEFAULT_ENABLED_ANNOTATIONS = ['hypervisor.default_vcpus', 'hypervisor.default_memory', 'runtime.user_nat'];

function checkValue(key: string, spec: Omit<KeySpec, 'apply'>, value: unknown): unknown {
  const bad = (what: string) => new ConfigError(key, `${what} (got ${JSON.stringify(value)})`);
  switch (spec.kind) {
    case 'string':
      if (typeof value !== 'string') throw bad('must be a string');
      if (spec.oneOf && !spec.oneOf.includes(value)) throw bad(`must be one of ${spec.oneOf.join(', ')}`);
      return value;
    case 'number': {
      const n = typeof value === 'bigint' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isFinite(n)) throw bad('must be a number');
      if (spec.min !== undefined && n < spec.min) throw bad(`must be at least ${spec.min}`);
      if (spec.integer && !Number.isInteger(n)) throw bad('must be a whole number');
      return n;
    }
    case 'boolean':
      if (typeof value !== 'boolean') throw bad('must be true or false');
      return value;
    case 'strings':
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw bad('must be a list of strings');
      return value;
  }
}

export interface LoadedConfig extends ToolDefaults {
  settings: SandboxSettings;
  enabledAnnotations: string[];
  source: string;
  /** The file each key set by it came from; keys not here have their defaults. */
  origins: Record<string, string>;
}

/** Applies a parsed TOML document over `base`. */
export function applyConfig(base: SandboxSettings, doc: Record<string, unknown>, source: string): LoadedConfig {
  const settings = structuredClone(base);
  const tools: ToolDefaults = { job: {}, gitlab: {} };
  let enabledAnnotations = DEFAULT_ENABLED_ANNOTATIONS;
  const origins: Record<string, string> = {};
  for (const [section, table] of Object.entries(doc)) {
    if (typeof table !== 'object' || table === null || Array.isArray(table)) throw new ConfigError(section, 'must be a table ([section])');
    for (const [name, value] of Object.entries(table)) {
      const key = `${section}.${name}`;
      const tool = TOOL_KEYS[key];
      if (tool) {
        tool.apply(tools, checkValue(key, tool, value) as never);
        origins[key] = source;
        continue;
      }
      const spec = KEYS[key];
      if (!spec) throw new ConfigError(key, 'unknown key');
      const checked = checkValue(key, spec, value);
      if (key === 'runtime.enable_annotations') {
        for (const k of checked as string[]) if (!KEYS[k] || k === key) throw new ConfigError(key, `${k} is not a key annotations can set`);
        enabledAnnotations = checked as string[];
      }
      spec.apply(settings, checked as never);
      origins[key] = source;
    }
  }
  return { settings, ...tools, enabledAnnotations, source, origins };
}

/**
 * Reads the file named by the runtime options (CRI `ConfigPath`, `ctr
 * --runtime-config-path`), else KATA_TS_CONFIG, else the first of `fallbacks`
 * that exists (the host's /etc/kata-ts file, then the one the runtime ships);
 * no file means the defaults.
 */
export function loadConfig(base: SandboxSettings, explicitPath?: string, fallbacks: readonly string[] = [DEFAULT_CONFIG_PATH]): LoadedConfig {
  const path = explicitPath || process.env.KATA_TS_CONFIG || (fallbacks.find((p) => existsSync(p)) ?? '');
  if (!path) return { settings: base, job: {}, gitlab: {}, enabledAnnotations: DEFAULT_ENABLED_ANNOTATIONS, source: 'defaults', origins: {} };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, `cannot read the file: ${(err as Error).message}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(path, `not valid TOML: ${(err as Error).message}`);
  }
  return applyConfig(base, doc, path);
}

/**
 * Applies `io.katacontainers.config.<section>.<key>` annotations of the
 * sandbox's spec. Only enabled keys may be set; any other is an error.
 */
export function applyAnnotations(config: LoadedConfig, annotations: Record<string, string> | undefined): SandboxSettings {
  const settings = structuredClone(config.settings);
  for (const [name, raw] of Object.entries(annotations ?? {})) {
    if (!name.startsWith(ANNOTATION_PREFIX)) continue;
    const key = name.slice(ANNOTATION_PREFIX.length);
    const spec = KEYS[key];
    if (!spec) throw new ConfigError(name, 'unknown annotation');
    if (!config.enabledAnnotations.includes(key)) throw new ConfigError(name, `not allowed; runtime.enable_annotations in ${config.source} permits: ${config.enabledAnnotations.join(', ') || 'none'}`);
    const value = spec.kind === 'number' ? (raw.trim() === '' ? Number.NaN : Number(raw)) : spec.kind === 'boolean' ? raw === 'true' : spec.kind === 'strings' ? raw.split(',') : raw;
    spec.apply(settings, checkValue(name, spec, value) as never);
  }
  // A pod may size its VM only within the ceilings the host's configuration sets.
  const ceiling = (annotation: string, asked: number, limitKey: string, limit: number, unit: string) => {
    if (annotations?.[annotation] !== undefined && asked > limit) throw new ConfigError(annotation, `asks for ${asked} ${unit}, more than ${limitKey} (${limit}) in ${config.source} allows`);
  };
  ceiling(`${ANNOTATION_PREFIX}hypervisor.default_vcpus`, settings.cpus, 'hypervisor.default_maxvcpus', settings.maxCpus, 'vCPUs');
  ceiling(`${ANNOTATION_PREFIX}hypervisor.default_memory`, settings.memoryMiB, 'hypervisor.default_maxmemory', settings.maxMemoryMiB, 'MiB');
  return settings;
}

/** One key of the resolved configuration, as `kata-ts env` shows it. */
export interface ResolvedKey {
  key: string;
  /** In the file's terms; undefined: unset (no cap, no default). */
  value: unknown;
  /** 'default', or the file that set it. */
  origin: string;
  /** Whether `io.katacontainers.config.<key>` may override it per sandbox (runtime.enable_annotations). */
  annotation: boolean;
}

/** Every key with its value and where that came from. Annotations apply per sandbox, so they are only marked. */
export function resolvedKeys(config: LoadedConfig): ResolvedKey[] {
  return [...Object.entries(KEYS), ...Object.entries(TOOL_KEYS)].map(([key, spec]) => ({
    key,
    value: spec.show(config),
    origin: config.origins[key] ?? 'default',
    annotation: config.enabledAnnotations.includes(key),
  }));
}
