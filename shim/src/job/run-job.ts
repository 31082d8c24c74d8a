// Runs one job in a throw-away sandbox VM: boot, share the rootfs and the
// workspace, run the command under its caps and time bound, stream its output,
// bring the artifacts back, tear everything down, and say what happened.
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, cp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Logger } from '../../../common/log.js';
import { loadNative } from '../../../native/native.js';
import { mountRootfs, unmountRootfs } from '../containerd/rootfs.js';
import { unpackImage } from './oci-image.js';
import { containerdImageConfig, mountContainerdImage, unmountContainerdImage } from './containerd-image.js';
import type { ContainerdTarget } from './ctr.js';
import type { ImageConfig } from './oci-image.js';
import { cleanupDeadSandbox } from '../sandbox/cleanup.js';
import { SandboxDeadError } from '../sandbox/errors.js';
import { ensureRunRoot, Sandbox } from '../sandbox/sandbox.js';
import type { SandboxSettings } from '../sandbox/settings.js';
import { jobSpec } from './job-spec.js';
import { networkModeProblem } from './job-network.js';
import type { JobOptions } from './options.js';
import { buildReport, type JobFacts, type JobReport } from './report.js';
import type { ContainerStats } from '../../../proto/gen/agent.js';

/** What the guest kernel and agent take beside the job's own memory cap. */
export const GUEST_OVERHEAD_MIB = 128;
const CONTAINER = 'job';
const STATS_EVERY_MS = 1000;
const FIRST_SAMPLES_MS = [50, 250];
/** The newest output kept for the JUnit file. */
const OUTPUT_TAIL_BYTES = 64 * 1024;

export interface JobIo {
  stdout: Writable;
  stderr: Writable;
  /** Gets both streams too, when --log names a file. */
  log?: Writable;
}

export interface JobResult {
  report: JobReport;
  /** The newest part of the output, for the JUnit file. */
  outputTail: string;
  /** Artifacts that were not there at the end. */
  missingArtifacts: string[];
}

class RuntimeFailure extends Error {}

/** Where a job keeps its copied workspace and secrets; removed with the job. */
const jobDirOf = (settings: SandboxSettings, id: string) => join(settings.runRoot, 'jobs', id);
const RUNNER_PIDFILE = 'runner.pid';

async function isFolder(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/** Fails before any VM boots when what the job names is not there. */
async function checkInputs(o: JobOptions, settings: SandboxSettings): Promise<void> {
  if (o.imageTar === undefined && o.image === undefined && !(await isFolder(o.rootfs))) throw new RuntimeFailure(`the job's root filesystem ${o.rootfs} is not a folder`);
  if (o.workspace !== undefined && !(await isFolder(o.workspace))) throw new RuntimeFailure(`--workspace ${o.workspace} is not a folder`);
  for (const [name, file] of o.secrets) {
    const s = await stat(file).catch(() => undefined);
    if (!s?.isFile()) throw new RuntimeFailure(`--secret ${name}: ${file} is not a readable file`);
  }
  const network = networkModeProblem(o.network, settings);
  if (network) throw new RuntimeFailure(network);
}

interface JobSources {
  /** The job's root: an overlay on the given rootfs, so what the job writes stays its own. */
  rootfs: string;
  workspaceSource?: string;
  secretsSource?: string;
}

/** The job's own folder, 0700, marked with this runner's pid so a sweep can tell whether it is alive. */
async function makeJobDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, RUNNER_PIDFILE), String(process.pid));
}

/** In the job's folder: its rootfs overlay (on lowerDirs, topmost first), the workspace copy and the secrets. */
async function prepareJobDir(o: JobOptions, dir: string, lowerDirs: string[]): Promise<JobSources> {
  const layers = { upper: join(dir, 'rootfs-upper'), work: join(dir, 'rootfs-work'), root: join(dir, 'rootfs') };
  for (const d of Object.values(layers)) await mkdir(d);
  await mountRootfs([{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lowerDirs.join(':')}`, `upperdir=${layers.upper}`, `workdir=${layers.work}`] }], layers.root);
  const out: JobSources = { rootfs: layers.root };
  if (o.workspace !== undefined) {
    if (o.copyWorkspace) {
      out.workspaceSource = join(dir, 'workspace');
      await cp(o.workspace, out.workspaceSource, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    } else out.workspaceSource = o.workspace;
  }
  if (o.secrets.size > 0) {
    out.secretsSource = join(dir, 'secrets');
    await mkdir(out.secretsSource, { mode: 0o700 });
    for (const [name, file] of o.secrets) {
      await copyFile(file, join(out.secretsSource, name));
      await chmod(join(out.secretsSource, name), 0o400);
    }
  }
  return out;
}

/** Copies the artifacts from the workspace copy back to the host's; names those that are missing. */
async function bringBackArtifacts(o: JobOptions, workspaceSource: string | undefined): Promise<string[]> {
  const missing: string[] = [];
  if (!o.workspace || !workspaceSource) return missing;
  for (const a of o.artifacts) {
    const from = join(workspaceSource, a);
    if (!(await stat(from).catch(() => undefined))) {
      missing.push(a);
      continue;
    }
    if (workspaceSource !== o.workspace) await cp(from, join(o.workspace, a), { recursive: true, force: true, preserveTimestamps: true, verbatimSymlinks: true });
  }
  return missing;
}

/**
 * Removes what runners that were killed (SIGKILL gives no chance to clean) left: their VMs,
 * mounts and job folders, found by a runner pid that no longer runs.
 */
export async function sweepDeadJobs(settings: SandboxSettings, log: Logger): Promise<void> {
  const root = join(settings.runRoot, 'jobs');
  for (const id of await readdir(root).catch(() => [] as string[])) {
    const pid = Number.parseInt(await readFile(join(root, id, RUNNER_PIDFILE), 'utf8').catch(() => ''), 10);
    if (pid > 0 && pid !== process.pid && (await stat(`/proc/${pid}`).catch(() => undefined))) continue;
    log.warn('removing what a killed job runner left', { job: id, runnerPid: pid || undefined });
    await cleanupDeadSandbox(settings.runRoot, id, log);
    await removeJobDir(join(root, id), log);
  }
}

const IMAGE_FILE = 'image.json';
const IMAGE_ROOT = 'image-root';

/** Mounts a containerd image in the job's folder, noting where from, so a sweep can undo it. */
async function mountImageFromContainerd(ref: string, c: ContainerdTarget, jobDir: string): Promise<ImageConfig> {
  const config = await containerdImageConfig(ref, c);
  await mkdir(join(jobDir, IMAGE_ROOT), { mode: 0o700 });
  // From here on a snapshot may exist: the teardown, or a later sweep, removes it.
  await writeFile(join(jobDir, IMAGE_FILE), JSON.stringify(c));
  await mountContainerdImage(ref, c, join(jobDir, IMAGE_ROOT));
  return config;
}

/**
 * Undoes a job's folder, for the job itself and for the sweep after a killed runner: the rootfs
 * overlay first (the image's mount is one of its layers), then the containerd image and its
 * snapshot if one was mounted, then the folder.
 */
async function removeJobDir(dir: string, log: Logger): Promise<void> {
  await unmountRootfs(join(dir, 'rootfs')).catch(() => undefined);
  const image = await readFile(join(dir, IMAGE_FILE), 'utf8').then((t) => JSON.parse(t) as ContainerdTarget, () => undefined);
  if (image) await unmountContainerdImage(image, join(dir, IMAGE_ROOT)).catch((err: Error) => log.warn('cannot unmount the image', { error: err.message }));
  await unmountRootfs(join(dir, IMAGE_ROOT)).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}

export function jobSettings(base: SandboxSettings, o: JobOptions): SandboxSettings {
  const settings = { ...base, userNat: o.network === 'nat' };
  if (o.cpus !== undefined) {
    settings.cpus = o.cpus;
    settings.maxCpus = Math.max(settings.maxCpus, o.cpus);
  }
  if (o.memoryMiB !== undefined) {
    settings.memoryMiB = o.memoryMiB + GUEST_OVERHEAD_MIB;
    settings.maxMemoryMiB = Math.max(settings.maxMemoryMiB, settings.memoryMiB);
  }
  return settings;
}

export async function runJob(o: JobOptions, base: SandboxSettings, log: Logger, io: JobIo, interrupted: AbortSignal): Promise<JobResult> {
  const settings = jobSettings(base, o);
  const id = `job-${randomBytes(6).toString('hex')}`;
  const startedAt = new Date();
  const facts: JobFacts = { name: o.name, command: o.command, startedAt, phasesMs: {}, timedOut: false, oomKilled: false };
  const tail: Buffer[] = [];
  let tailBytes = 0;
  const keep = (chunk: Buffer) => {
    tail.push(chunk);
    tailBytes += chunk.length;
    while (tailBytes - (tail[0]?.length ?? 0) > OUTPUT_TAIL_BYTES) tailBytes -= tail.shift()!.length;
  };
  const jobDir = jobDirOf(settings, id);
  let sandbox: Sandbox | undefined;
  let missingArtifacts: string[] = [];
  let sources: Partial<JobSources> = {};
  let phaseStart = performance.now();
  const endPhase = (phase: keyof JobFacts['phasesMs']) => {
    const now = performance.now();
    facts.phasesMs[phase] = Math.round(now - phaseStart);
    phaseStart = now;
  };
  try {
    await checkInputs(o, settings);
    await ensureRunRoot(settings);
    await sweepDeadJobs(settings, log);
    await makeJobDir(jobDir);
    // Before the boot: a bad image costs no VM. The image phase is this and sharing the rootfs.
    const image = o.imageTar !== undefined ? await unpackImage(o.imageTar, o.layerCache, loadNative()) : undefined;
    if (image) facts.image = { layers: image.layers.length, unpacked: image.unpacked };
    const fromContainerd = o.image !== undefined ? await mountImageFromContainerd(o.image, o.containerd, jobDir) : undefined;
    const imageMs = performance.now() - phaseStart;
    const lowerDirs = image ? [...image.layers].reverse() : fromContainerd ? [join(jobDir, IMAGE_ROOT)] : [o.rootfs];
    const prepared = await prepareJobDir(o, jobDir, lowerDirs);
    const imageConfig = image?.config ?? fromContainerd;
    phaseStart = performance.now();
    sources = prepared;
    const { rootfs, ...shared } = prepared;
    // With a network, the VMM gets a namespace of its own, which the NAT fills at the job's start.
    sandbox = await Sandbox.start(id, settings, log, { signal: interrupted, dieWithOwner: true, lateNetwork: o.network === 'nat' });
    facts.accel = sandbox.timeline.accel;
    endPhase('boot');
    const spec = jobSpec({
      command: o.command,
      env: [...(imageConfig?.env ?? []), ...o.env],
      ...(imageConfig ? { workingDir: imageConfig.workingDir } : {}),
      ...shared,
      ...(o.memoryMiB !== undefined ? { memoryLimitBytes: o.memoryMiB * 1024 * 1024 } : {}),
      ...(o.pidsLimit !== undefined ? { pidsLimit: o.pidsLimit } : {}),
    });
    await sandbox.createContainer(CONTAINER, { spec, rootfs });
    endPhase('image');
    facts.phasesMs.image! += Math.round(imageMs);
    await runContainer(sandbox, o, facts, io, keep, interrupted);
    endPhase('job');
  } catch (err) {
    if (!(err instanceof SandboxDeadError && facts.timedOut)) facts.runtimeError = (err as Error).message;
    endPhase(facts.phasesMs.boot === undefined ? 'boot' : 'job');
  } finally {
    await sandbox?.removeContainer(CONTAINER, true).catch(() => undefined);
    await sandbox?.stop().catch((err: Error) => log.error('cannot stop the job sandbox', { error: err.message }));
    missingArtifacts = await bringBackArtifacts(o, sources.workspaceSource).catch((err: Error) => {
      facts.runtimeError ??= `cannot bring the artifacts back: ${err.message}`;
      return o.artifacts;
    });
    await removeJobDir(jobDir, log);
    endPhase('teardown');
  }
  return { report: buildReport(facts), outputTail: Buffer.concat(tail).toString('utf8'), missingArtifacts };
}

/** Starts the job, streams its output, enforces its time bound, and records how it ended. */
async function runContainer(sandbox: Sandbox, o: JobOptions, facts: JobFacts, io: JobIo, keep: (b: Buffer) => void, interrupted: AbortSignal): Promise<void> {
  void (async () => {
    for (;;) {
      const hit = await sandbox.nextOomKill().catch(() => null); // null: the sandbox is gone
      if (hit === null) return;
      if (hit === CONTAINER) facts.oomKilled = true;
    }
  })();
  const { process: proc } = await sandbox.startContainer(CONTAINER);
  for (const [source, sink] of [
    [proc.stdout, io.stdout],
    [proc.stderr, io.stderr],
  ] as const) {
    source.on('data', (chunk: Buffer) => {
      sink.write(chunk);
      io.log?.write(chunk);
      keep(chunk);
    });
  }
  await proc.closeStdin();
  let peak = 0;
  // Sampled while the job runs (crun removes its cgroup with it): the last sample before the exit
  // stands for the whole, and a job shorter than the first sample has none.
  const record = (s: ContainerStats) => {
    peak = Math.max(peak, Number(s.memory?.peak ?? 0), Number(s.memory?.usage ?? 0));
    if (Number(s.memory?.oomKillEvents ?? 0) > 0) facts.oomKilled = true;
    const user = Math.round(Number(s.cpu?.userUsec ?? 0) / 1000);
    const system = Math.round(Number(s.cpu?.systemUsec ?? 0) / 1000);
    if (user + system >= (facts.cpuTimeMs?.user ?? 0) + (facts.cpuTimeMs?.system ?? 0) && user + system > 0) facts.cpuTimeMs = { user, system };
  };
  const sample = () => void sandbox.containerStats(CONTAINER).then(record, () => undefined);
  const early = FIRST_SAMPLES_MS.map((ms) => setTimeout(sample, ms));
  const stats = setInterval(sample, STATS_EVERY_MS);
  // Past the bound (or interrupted): SIGTERM, then the whole VM goes after the grace period.
  const end = (why: 'timeout' | 'interrupt') => {
    if (why === 'timeout') facts.timedOut = true;
    void proc.signal(15).catch(() => undefined);
    setTimeout(() => void sandbox.stop(), why === 'timeout' ? o.graceMs : 0).unref();
  };
  const timer = o.timeoutMs !== undefined ? setTimeout(() => end('timeout'), o.timeoutMs) : undefined;
  const onInterrupt = () => end('interrupt');
  interrupted.addEventListener('abort', onInterrupt, { once: true });
  try {
    const exit = await proc.wait();
    facts.status = exit.status;
  } finally {
    clearTimeout(timer);
    for (const t of early) clearTimeout(t);
    clearInterval(stats);
    interrupted.removeEventListener('abort', onInterrupt);
    if (peak > 0) facts.peakMemoryBytes = peak;
    if (interrupted.aborted) facts.runtimeError ??= `interrupted (${String(interrupted.reason?.message ?? interrupted.reason)})`;
  }
}
