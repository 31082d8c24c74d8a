// `kata-ts job run`: one CI job in a throw-away VM, with the exit codes,
// report and JUnit file a CI system reads.
import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '../../../common/log.js';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../containerd/config.js';
import { defaultShimSettings, RUNTIME_ROOT, SHIPPED_CONFIG_PATH } from '../containerd/shim-settings.js';
import { configPathOf, optionsPart, DEFAULT_CONTAINERD, DEFAULT_LAYER_CACHE, JobUsageError, parseJobArgs } from '../job/options.js';
import { EXIT_RUNTIME_FAILURE, EXIT_TIMED_OUT, renderJunit, type JobReport } from '../job/report.js';
import { GUEST_OVERHEAD_MIB, runJob } from '../job/run-job.js';

export const JOB_USAGE = '  job run [OPTIONS] -- COMMAND [ARG…]                                run a CI job in a throw-away VM (kata-ts job --help)';

const HELP = `usage: kata-ts job run [OPTIONS] -- COMMAND [ARG…]

Boots a fresh VM, runs COMMAND in a container there, tears everything down and
exits with the job's status.

the job's files
  --rootfs DIR           the job's root filesystem (default: the busybox rootfs of the runtime folder)
  --image-tar FILE       an OCI image tarball (ctr image export) instead: its layers are unpacked once into
                         --layer-cache (${DEFAULT_LAYER_CACHE}), keyed by digest, and its Env and WorkingDir apply
  --image REF            a containerd image instead, mounted from containerd's snapshotter (pull or import it first)
  --containerd SOCKET    containerd's address for --image (${DEFAULT_CONTAINERD}); --namespace NS (default)
  --workspace DIR        mounted read-write at /workspace, the job's working directory
  --copy-workspace       copy the workspace in instead: the host's copy stays untouched
  --artifact PATH        a path in the workspace brought back to the host workspace at the end (repeatable)
  --secret NAME=FILE     FILE's content at /run/secrets/NAME, read-only, in the guest only (repeatable)
  -e, --env NAME=VALUE   an environment variable of the job (repeatable)
caps
  --cpus N               vCPUs of the VM
  --memory SIZE          the job's memory cap (512m, 2g); the VM gets ${GUEST_OVERHEAD_MIB} MiB more for the guest
  --pids-limit N         how many processes the job may have at once
  --timeout DURATION     wall-clock bound (90s, 10m, 1h): SIGTERM, then the VM is killed after --grace (10s)
  --network MODE         none: loopback only (the default), nothing outside the VM is reachable;
                         nat: outbound TCP/UDP through user-mode NAT on the host (slirp4netns), DNS at 10.0.2.3;
                         the host's loopback (10.0.2.2, 127.0.0.1) stays out of reach, its other addresses do not
what it tells
  --report FILE          a JSON report: outcome, exit status, timed out, OOM-killed, phase times, peak memory, CPU time
  --junit FILE           a JUnit XML file with one test case, the job
  --log FILE             the job's output (stdout and stderr) also goes here
  --name NAME            the job's name in the report and the JUnit file (default: the command)
  --config FILE          the configuration file (default: /etc/kata-ts/configuration.toml, else the shipped one);
                         its [job] section gives defaults for these options (docs/configuration.md)
  --debug                debug logs of the runtime on stderr

exit status: the job's own (128+N for signal N); ${EXIT_TIMED_OUT} when the timeout hit; ${EXIT_RUNTIME_FAILURE} when kata-ts
itself failed (a missing rootfs or workspace, no usable accel, a boot failure, a bad option);
130 or 143 when interrupted (SIGINT, SIGTERM), after the VM is gone.`;

function summary(r: JobReport, missing: string[]): string {
  const phases = Object.entries(r.phasesMs)
    .map(([k, v]) => `${k} ${v} ms`)
    .join(', ');
  const what =
    r.outcome === 'succeeded'
      ? 'succeeded'
      : r.outcome === 'failed'
        ? `failed with exit status ${r.jobExitStatus}${r.oomKilled ? ' (OOM-killed)' : ''}`
        : r.outcome === 'timed-out'
          ? 'timed out'
          : `could not run: ${r.error}`;
  const lost = missing.length ? `; artifacts not found: ${missing.join(', ')}` : '';
  return `kata-ts job: ${what} (${phases})${lost}\n`;
}

export async function jobCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const ours = optionsPart(rest);
  if (sub === undefined || sub === '-h' || sub === '--help' || ours.includes('--help') || ours.includes('-h')) {
    process.stdout.write(`${HELP}\n`);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'run') {
    process.stderr.write(`kata-ts job: unknown command ${JSON.stringify(sub)}\n${HELP}\n`);
    return 2;
  }
  let options;
  let settings;
  try {
    const config = loadConfig(defaultShimSettings(ours.includes('--debug')), configPathOf(rest), [DEFAULT_CONFIG_PATH, SHIPPED_CONFIG_PATH]);
    options = parseJobArgs(rest, { rootfs: join(RUNTIME_ROOT, 'busybox-rootfs'), ...config.job });
    settings = config.settings;
  } catch (err) {
    process.stderr.write(`kata-ts job: ${(err as Error).message}${err instanceof JobUsageError ? '\n(kata-ts job --help)' : ''}\n`);
    return EXIT_RUNTIME_FAILURE;
  }
  const log = createLogger({ level: options.debug ? 'debug' : 'warn' });
  const interrupted = new AbortController();
  let signalled: NodeJS.Signals | undefined;
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.on(signal, () => {
      signalled ??= signal;
      interrupted.abort(new Error(signal));
    });
  const logFile = options.logPath ? createWriteStream(options.logPath, { flags: 'a', mode: 0o600 }) : undefined;
  const result = await runJob(options, settings, log, { stdout: process.stdout, stderr: process.stderr, ...(logFile ? { log: logFile } : {}) }, interrupted.signal);
  await new Promise<void>((resolve) => (logFile ? logFile.end(resolve) : resolve()));
  if (options.reportPath) await writeFile(options.reportPath, `${JSON.stringify({ ...result.report, missingArtifacts: result.missingArtifacts }, null, 2)}\n`);
  if (options.junitPath) await writeFile(options.junitPath, renderJunit(result.report, result.outputTail));
  process.stderr.write(summary(result.report, result.missingArtifacts));
  if (signalled) return signalled === 'SIGINT' ? 130 : 143;
  return result.report.exitCode;
}
