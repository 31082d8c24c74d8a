// `kata-ts job run` options: parsed and checked before any VM boots, so bad
// input costs nothing and says which option is wrong.
import { parseArgs } from 'node:util';
import { isAbsolute, normalize } from 'node:path';
import type { JobDefaults } from '../containerd/config.js';
import type { ContainerdTarget } from './ctr.js';

export class JobUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JobUsageError';
  }
}

/** none: loopback only. nat: outbound connections through user-mode NAT, never to the host's loopback. */
export type NetworkMode = 'none' | 'nat';
export const NETWORK_MODES: readonly NetworkMode[] = ['none', 'nat'];

export interface JobOptions {
  command: string[];
  /** The job's root filesystem: a folder, or (imageTar) an OCI image tarball's layers. */
  rootfs: string;
  imageTar?: string;
  /** A containerd image reference, mounted from containerd's snapshotter. */
  image?: string;
  containerd: ContainerdTarget;
  /** Where image layers are unpacked, one folder per layer digest. */
  layerCache: string;
  /** Host folder mounted at /workspace, the job's working directory. */
  workspace?: string;
  /** Copy the workspace in (the host copy stays untouched); only artifacts come back. */
  copyWorkspace: boolean;
  /** Paths relative to /workspace copied back to the host workspace at the end. */
  artifacts: string[];
  cpus?: number;
  memoryMiB?: number;
  /** Wall-clock bound of the job; SIGTERM, then the VM is killed after graceMs. */
  timeoutMs?: number;
  graceMs: number;
  pidsLimit?: number;
  env: string[];
  /** name → host file; appears read-only at /run/secrets/<name> in the guest only. */
  secrets: Map<string, string>;
  network: NetworkMode;
  reportPath?: string;
  junitPath?: string;
  logPath?: string;
  /** Shown in the JUnit file. */
  name: string;
  configPath?: string;
  debug: boolean;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "90", "90s", "1.5m", "500ms", "2h" → milliseconds (a bare number is seconds). */
export function parseDuration(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new JobUsageError(`${option} ${JSON.stringify(text)}: a duration is a number with ms, s, m or h (seconds when none)`);
  const ms = Number(m[1]) * UNITS[m[2] ?? 's']!;
  if (ms <= 0) throw new JobUsageError(`${option} ${JSON.stringify(text)}: must be more than zero`);
  return Math.round(ms);
}

const SIZE_UNITS: Record<string, number> = { k: 1 / 1024, m: 1, g: 1024 };

/** "512m", "2g", "1024" (MiB) → MiB. */
export function parseSizeMiB(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg])?(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new JobUsageError(`${option} ${JSON.stringify(text)}: a size is a number with k, m or g (MiB when none)`);
  const mib = Math.floor(Number(m[1]) * SIZE_UNITS[(m[2] ?? 'm').toLowerCase()]!);
  if (mib < 64) throw new JobUsageError(`${option} ${JSON.stringify(text)}: a VM needs at least 64 MiB`);
  return mib;
}

function positiveInteger(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new JobUsageError(`${option} ${JSON.stringify(text)}: must be a whole number of at least 1`);
  return Number(text);
}

/** An artifact path stays inside the workspace: relative, without `..`. */
function artifactPath(text: string): string {
  const p = normalize(text);
  if (isAbsolute(p) || p === '..' || p.startsWith('../')) throw new JobUsageError(`--artifact ${JSON.stringify(text)}: must be a path inside the workspace`);
  return p;
}

const SECRET_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export const DEFAULT_LAYER_CACHE = '/var/cache/kata-ts/layers';
export const DEFAULT_CONTAINERD = '/run/containerd/containerd.sock';

/** The arguments before `--`: what follows is the job's command, never an option of ours. */
export function optionsPart(argv: string[]): string[] {
  const end = argv.indexOf('--');
  return end < 0 ? argv : argv.slice(0, end);
}

/** The file --config names, looked for before the rest is parsed: its [job] section gives the defaults. */
export function configPathOf(argv: string[]): string | undefined {
  const options = optionsPart(argv);
  let found: string | undefined;
  options.forEach((a, i) => {
    if (a === '--config') found = options[i + 1];
    else if (a.startsWith('--config=')) found = a.slice('--config='.length);
  });
  return found;
}

/** Options over `defaults` (the configuration's [job] section, and the runtime's rootfs). */
export function parseJobArgs(argv: string[], defaults: JobDefaults & { rootfs: string }): JobOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        rootfs: { type: 'string' },
        'image-tar': { type: 'string' },
        image: { type: 'string' },
        containerd: { type: 'string' },
        namespace: { type: 'string' },
        'layer-cache': { type: 'string' },
        workspace: { type: 'string' },
        'copy-workspace': { type: 'boolean', default: false },
        artifact: { type: 'string', multiple: true, default: [] },
        cpus: { type: 'string' },
        memory: { type: 'string' },
        timeout: { type: 'string' },
        grace: { type: 'string' },
        'pids-limit': { type: 'string' },
        env: { type: 'string', short: 'e', multiple: true, default: [] },
        secret: { type: 'string', multiple: true, default: [] },
        network: { type: 'string' },
        report: { type: 'string' },
        junit: { type: 'string' },
        log: { type: 'string' },
        name: { type: 'string' },
        config: { type: 'string' },
        debug: { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    throw new JobUsageError((err as Error).message);
  }
  const v = parsed.values;
  if (parsed.positionals.length === 0) throw new JobUsageError('no command given (kata-ts job run [options] -- COMMAND [ARG…])');
  const network = v.network ?? defaults.network ?? 'none';
  if (!NETWORK_MODES.includes(network as NetworkMode))
    throw new JobUsageError(`--network ${JSON.stringify(network)}: the modes are none (loopback only) and nat (outbound through user-mode NAT)`);
  const given = [v.rootfs, v['image-tar'], v.image].filter((x) => x !== undefined).length;
  if (given > 1) throw new JobUsageError('--rootfs, --image-tar and --image each name the root filesystem: give one');
  if (v['copy-workspace'] && !v.workspace) throw new JobUsageError('--copy-workspace needs --workspace');
  if (v.artifact.length > 0 && !v.workspace) throw new JobUsageError('--artifact needs --workspace');
  for (const e of v.env) if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(e)) throw new JobUsageError(`--env ${JSON.stringify(e)}: must be NAME=VALUE`);
  const secrets = new Map<string, string>();
  for (const s of v.secret) {
    const eq = s.indexOf('=');
    const name = s.slice(0, eq);
    if (eq < 1 || !SECRET_NAME.test(name) || eq === s.length - 1) throw new JobUsageError(`--secret ${JSON.stringify(s)}: must be NAME=FILE, NAME of letters, digits, _ . -`);
    if (secrets.has(name)) throw new JobUsageError(`--secret ${name}: given twice`);
    secrets.set(name, s.slice(eq + 1));
  }
  const options: JobOptions = {
    command: parsed.positionals,
    rootfs: v.rootfs ?? defaults.rootfs,
    layerCache: v['layer-cache'] ?? defaults.layerCache ?? DEFAULT_LAYER_CACHE,
    containerd: { address: v.containerd ?? defaults.containerd ?? DEFAULT_CONTAINERD, namespace: v.namespace ?? defaults.namespace ?? 'default' },
    copyWorkspace: v['copy-workspace'],
    artifacts: v.artifact.map(artifactPath),
    graceMs: v.grace === undefined ? (defaults.graceMs ?? 10_000) : parseDuration(v.grace, '--grace'),
    env: v.env,
    secrets,
    network: network as NetworkMode,
    name: v.name ?? parsed.positionals.join(' ').slice(0, 200),
    debug: v.debug,
  };
  if (v.workspace !== undefined) options.workspace = v.workspace;
  if (v['image-tar'] !== undefined) options.imageTar = v['image-tar'];
  // The configured image stands in only when the options name no root filesystem at all.
  const image = v.image ?? (given === 0 ? defaults.image : undefined);
  if (image !== undefined) options.image = image;
  const cpus = positiveInteger(v.cpus, '--cpus') ?? defaults.cpus;
  if (cpus !== undefined) options.cpus = cpus;
  const memoryMiB = v.memory !== undefined ? parseSizeMiB(v.memory, '--memory') : defaults.memoryMiB;
  if (memoryMiB !== undefined) options.memoryMiB = memoryMiB;
  const timeoutMs = v.timeout !== undefined ? parseDuration(v.timeout, '--timeout') : defaults.timeoutMs;
  if (timeoutMs !== undefined) options.timeoutMs = timeoutMs;
  const pids = positiveInteger(v['pids-limit'], '--pids-limit') ?? defaults.pidsLimit;
  if (pids !== undefined) options.pidsLimit = pids;
  if (v.report !== undefined) options.reportPath = v.report;
  if (v.junit !== undefined) options.junitPath = v.junit;
  if (v.log !== undefined) options.logPath = v.log;
  if (v.config !== undefined) options.configPath = v.config;
  return options;
}
