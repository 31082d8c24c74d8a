// What a job run reports: the exit code a CI system acts on, a JSON report
// and, on request, a JUnit XML file. Pure: the runner fills the facts in.

/** A timeout, as GNU timeout and docker report it. */
export const EXIT_TIMED_OUT = 124;
/** The runtime failed (no image, no usable accel, boot failure): not the job's fault, as docker run. */
export const EXIT_RUNTIME_FAILURE = 125;

export interface JobPhasesMs {
  boot?: number;
  image?: number;
  job?: number;
  teardown?: number;
}

export interface JobReport {
  name: string;
  command: string[];
  /** job: the job's own status; runtime: kata-ts could not run it (see error). */
  outcome: 'succeeded' | 'failed' | 'timed-out' | 'runtime-failure';
  /** What kata-ts exits with. */
  exitCode: number;
  /** The job's own exit status (128 + signal for a signal), when it ran to an end. */
  jobExitStatus?: number;
  signal?: number;
  timedOut: boolean;
  oomKilled: boolean;
  error?: string;
  startedAt: string;
  phasesMs: JobPhasesMs;
  peakMemoryBytes?: number;
  cpuTimeMs?: { user: number; system: number };
  accel?: string;
  /** For --image-tar: its layers, and how many had to be unpacked (the rest came from the cache). */
  image?: { layers: number; unpacked: number };
}

export interface JobFacts {
  name: string;
  command: string[];
  startedAt: Date;
  phasesMs: JobPhasesMs;
  /** The job's exit status, if it exited. */
  status?: number;
  timedOut: boolean;
  oomKilled: boolean;
  /** Set when kata-ts itself failed. */
  runtimeError?: string;
  peakMemoryBytes?: number;
  cpuTimeMs?: { user: number; system: number };
  accel?: string;
  image?: { layers: number; unpacked: number };
}

export function buildReport(f: JobFacts): JobReport {
  const base = {
    name: f.name,
    command: f.command,
    timedOut: f.timedOut,
    oomKilled: f.oomKilled,
    startedAt: f.startedAt.toISOString(),
    phasesMs: f.phasesMs,
    ...(f.peakMemoryBytes !== undefined ? { peakMemoryBytes: f.peakMemoryBytes } : {}),
    ...(f.cpuTimeMs ? { cpuTimeMs: f.cpuTimeMs } : {}),
    ...(f.accel ? { accel: f.accel } : {}),
    ...(f.image ? { image: f.image } : {}),
  };
  const status = f.status === undefined ? {} : { jobExitStatus: f.status, ...(f.status > 128 ? { signal: f.status - 128 } : {}) };
  if (f.timedOut) return { ...base, ...status, outcome: 'timed-out', exitCode: EXIT_TIMED_OUT };
  if (f.runtimeError !== undefined || f.status === undefined)
    return { ...base, ...status, outcome: 'runtime-failure', exitCode: EXIT_RUNTIME_FAILURE, error: f.runtimeError ?? 'the job did not run to an end' };
  return { ...base, ...status, outcome: f.status === 0 ? 'succeeded' : 'failed', exitCode: f.status };
}

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Text safe inside XML attributes and elements: escaped, and without characters XML 1.0 forbids. */
export function xmlText(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '\ufffd').replace(/[&<>"']/g, (c) => XML_ESCAPES[c]!);
}

/** One test suite with one test case: the job. A failure or error element says why it did not pass. */
export function renderJunit(r: JobReport, outputTail: string): string {
  const seconds = ((r.phasesMs.job ?? 0) / 1000).toFixed(3);
  const failures = r.outcome === 'failed' || r.outcome === 'timed-out' ? 1 : 0;
  const errors = r.outcome === 'runtime-failure' ? 1 : 0;
  const why =
    r.outcome === 'failed'
      ? `<failure message="${xmlText(`exit status ${r.jobExitStatus}${r.oomKilled ? ' (OOM-killed)' : ''}`)}" type="exit"/>`
      : r.outcome === 'timed-out'
        ? `<failure message="timed out" type="timeout"/>`
        : r.outcome === 'runtime-failure'
          ? `<error message="${xmlText(r.error ?? 'runtime failure')}" type="runtime"/>`
          : '';
  const out = outputTail ? `<system-out>${xmlText(outputTail)}</system-out>` : '';
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites tests="1" failures="${failures}" errors="${errors}" time="${seconds}">`,
    `  <testsuite name="kata-ts job" tests="1" failures="${failures}" errors="${errors}" time="${seconds}" timestamp="${r.startedAt}">`,
    `    <testcase classname="kata-ts.job" name="${xmlText(r.name)}" time="${seconds}">${why}${out}</testcase>`,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
