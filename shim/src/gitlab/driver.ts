// A GitLab Runner custom executor driver: `config`, `prepare`, `run SCRIPT
// STAGE` and `cleanup`, as GitLab's custom executor protocol calls them. The
// job's VM is a kata-ts container that containerd holds from prepare to
// cleanup, so each stage's script runs in the same guest and state carries
// over; the real `ctr` drives it.
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { ctr as runCtr, ctrArgs, type ContainerdTarget } from '../job/ctr.js';

export const DRIVER_NAME = 'kata-ts';
export const BUILDS_DIR = '/builds';
export const CACHE_DIR = '/cache';
export const KATA_RUNTIME = 'io.containerd.kata-ts.v2';

export interface DriverSettings {
  /** The containerd that holds the jobs' VMs. */
  containerd: ContainerdTarget;
  /** The image of jobs that name none (CUSTOM_ENV_CI_JOB_IMAGE). */
  defaultImage: string;
  /** The shell each stage's script is fed to. */
  shell: string;
  /** none: loopback only; nat: outbound through user-mode NAT (git clone, dependencies). */
  network: 'none' | 'nat';
}

/** Asks the shim for user-mode NAT on a task that no CNI gives a network. */
export const USER_NAT_ANNOTATION = 'io.katacontainers.config.runtime.user_nat=true';

/** The exit codes the runner gave us, and what we fall back to without them. */
export function failureCodes(env: NodeJS.ProcessEnv): { build: number; system: number } {
  const code = (name: string, fallback: number) => {
    const n = Number.parseInt(env[name] ?? '', 10);
    return Number.isInteger(n) && n >= 0 && n < 256 ? n : fallback;
  };
  return { build: code('BUILD_FAILURE_EXIT_CODE', 1), system: code('SYSTEM_FAILURE_EXIT_CODE', 2) };
}

/** One container per job: the runner's ids make it unique on this host. */
export function containerId(env: NodeJS.ProcessEnv): string {
  const job = env.CUSTOM_ENV_CI_JOB_ID;
  if (!job || !/^\d+$/.test(job)) throw new DriverError('CUSTOM_ENV_CI_JOB_ID is not set to a job id: is this run by gitlab-runner?');
  const runner = (env.CUSTOM_ENV_CI_RUNNER_ID ?? '0').replace(/[^0-9]/g, '') || '0';
  return `gitlab-${runner}-${job}`;
}

export class DriverError extends Error {}

/** What `config` prints: where builds and caches live in the guest, and who we are. */
export function configJson(version: string, hostname: string): string {
  return JSON.stringify({
    builds_dir: BUILDS_DIR,
    cache_dir: CACHE_DIR,
    builds_dir_is_shared: false,
    hostname,
    driver: { name: DRIVER_NAME, version },
  });
}

const ctr = (s: DriverSettings, args: string[]) => runCtr(s.containerd, args);

async function taskStatus(s: DriverSettings, id: string): Promise<string | undefined> {
  const r = await ctr(s, ['task', 'ls']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((cols) => cols[0] === id)?.[2];
}

/** Boots the job's VM from its image and leaves it running for the stages. */
export async function prepare(s: DriverSettings, env: NodeJS.ProcessEnv, log: (line: string) => void): Promise<void> {
  const id = containerId(env);
  const image = env.CUSTOM_ENV_CI_JOB_IMAGE || s.defaultImage;
  // A leftover of an earlier attempt of this job would make the name taken.
  await cleanup(s, env);
  log(`kata-ts: starting a VM for job ${env.CUSTOM_ENV_CI_JOB_ID} from ${image}`);
  const network = s.network === 'nat' ? ['--annotation', USER_NAT_ANNOTATION] : [];
  const r = await ctr(s, ['run', '-d', '--runtime', KATA_RUNTIME, ...network, image, id, 'sh', '-c', `mkdir -p ${BUILDS_DIR} ${CACHE_DIR} && exec sleep 2147483647`]);
  if (!r.ok) throw new DriverError(`cannot start the job's VM from ${image}: ${r.stderr}`);
  if ((await taskStatus(s, id)) !== 'RUNNING') throw new DriverError(`the job's VM did not stay up`);
}

/**
 * Feeds one stage's script to the shell in the job's VM. The script's failure is the build's;
 * a VM that is gone (the task not running) is ours.
 */
export async function runStage(s: DriverSettings, env: NodeJS.ProcessEnv, script: string, stage: string): Promise<'ok' | 'build-failure' | 'system-failure'> {
  const id = containerId(env);
  if ((await taskStatus(s, id)) !== 'RUNNING') return 'system-failure';
  const execId = `${stage.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}-${process.pid}`;
  const code = await new Promise<number>((resolve) => {
    const p = spawn('ctr', ctrArgs(s.containerd, ['task', 'exec', '--exec-id', execId, id, s.shell, '-s']), { stdio: ['pipe', 'inherit', 'inherit'] });
    createReadStream(script).on('error', () => p.stdin.end()).pipe(p.stdin);
    p.stdin.on('error', () => undefined);
    p.once('error', () => resolve(-1));
    p.once('close', (c) => resolve(c ?? -1));
  });
  if (code === 0) return 'ok';
  return (await taskStatus(s, id)) === 'RUNNING' && code > 0 ? 'build-failure' : 'system-failure';
}

/** Removes the job's VM and container, whatever happened before; nothing to remove is fine. */
export async function cleanup(s: DriverSettings, env: NodeJS.ProcessEnv): Promise<void> {
  const id = containerId(env);
  await ctr(s, ['task', 'kill', '-s', 'SIGKILL', id]);
  await ctr(s, ['task', 'rm', '-f', id]);
  await ctr(s, ['container', 'rm', id]);
}
