// What a shim tells about its sandbox on GET /status (`kata-ts ps`, and the
// labels `kata-ts monitor` adds), and the checked reading of it: the reader
// is another process that may meet a shim of another version.
import type { BootTimeline } from '../sandbox/vm-boot.js';

export const STATUS_VERSION = 1;

/** The pod a sandbox runs, from the CRI annotations of its spec; absent for a plain container. */
export interface PodIdentity {
  name: string;
  namespace: string;
  uid: string;
}

export interface SandboxIdentity {
  id: string;
  /** containerd's namespace. */
  namespace: string;
  pod?: PodIdentity;
}

export interface ContainerStatus {
  id: string;
  /** created, running, paused, stopped or unknown. */
  status: string;
  execs: number;
}

/** Milliseconds from QEMU's spawn to each boot phase: the sandbox's timeline (accel and channel are fields of their own). */
export type BootTimelineStatus = Omit<BootTimeline, 'accel' | 'channel'>;

export type HostProcessRole = 'qemu' | 'virtiofsd' | 'shim';

export interface HostProcessStatus {
  role: HostProcessRole;
  pid: number;
  rssBytes: number;
  /** null where the kernel cannot tell it. */
  pssBytes: number | null;
  cpuSeconds: number;
}

export interface SandboxStatus extends SandboxIdentity {
  version: number;
  accel: string;
  channel: string;
  /** When QEMU was spawned (ISO 8601). */
  startedAt: string;
  timeline: BootTimelineStatus;
  containers: ContainerStatus[];
  processes: HostProcessStatus[];
}

export class StatusFormatError extends Error {
  constructor(message: string) {
    super(`sandbox status: ${message}`);
    this.name = 'StatusFormatError';
  }
}

type Json = Record<string, unknown>;

function object(value: unknown, what: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new StatusFormatError(`${what} is not an object`);
  return value as Json;
}

function string(o: Json, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new StatusFormatError(`${what}.${key} is not a string`);
  return v;
}

function number(o: Json, key: string, what: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new StatusFormatError(`${what}.${key} is not a number`);
  return v;
}

function array(o: Json, key: string, what: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new StatusFormatError(`${what}.${key} is not a list`);
  return v;
}

const ROLES: readonly HostProcessRole[] = ['qemu', 'virtiofsd', 'shim'];

function hostProcess(value: unknown, i: number): HostProcessStatus {
  const what = `processes[${i}]`;
  const p = object(value, what);
  const role = string(p, 'role', what);
  if (!(ROLES as readonly string[]).includes(role)) throw new StatusFormatError(`${what}.role ${JSON.stringify(role)} is not one of ${ROLES.join(', ')}`);
  return {
    role: role as HostProcessRole,
    pid: number(p, 'pid', what),
    rssBytes: number(p, 'rssBytes', what),
    pssBytes: p['pssBytes'] === null ? null : number(p, 'pssBytes', what),
    cpuSeconds: number(p, 'cpuSeconds', what),
  };
}

function container(value: unknown, i: number): ContainerStatus {
  const what = `containers[${i}]`;
  const c = object(value, what);
  return { id: string(c, 'id', what), status: string(c, 'status', what), execs: number(c, 'execs', what) };
}

/** Reads a shim's /status answer; throws StatusFormatError naming the first field that is wrong. */
export function parseSandboxStatus(text: string): SandboxStatus {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new StatusFormatError(`not JSON: ${(err as Error).message}`);
  }
  const s = object(raw, 'status');
  const version = number(s, 'version', 'status');
  if (version !== STATUS_VERSION) throw new StatusFormatError(`version ${version} is not ${STATUS_VERSION}`);
  const t = object(s['timeline'], 'status.timeline');
  const pod = s['pod'] === undefined || s['pod'] === null ? undefined : object(s['pod'], 'status.pod');
  const startedAt = string(s, 'startedAt', 'status');
  if (Number.isNaN(Date.parse(startedAt))) throw new StatusFormatError(`status.startedAt ${JSON.stringify(startedAt)} is not a time`);
  return {
    version,
    id: string(s, 'id', 'status'),
    namespace: string(s, 'namespace', 'status'),
    ...(pod ? { pod: { name: string(pod, 'name', 'status.pod'), namespace: string(pod, 'namespace', 'status.pod'), uid: string(pod, 'uid', 'status.pod') } } : {}),
    accel: string(s, 'accel', 'status'),
    channel: string(s, 'channel', 'status'),
    startedAt,
    timeline: {
      // A shim from before templates sends no boot kind: its VMs all booted.
      boot: t['boot'] === 'template' ? 'template' : 'cold',
      ...(t['restoredMs'] === undefined ? {} : { restoredMs: number(t, 'restoredMs', 'status.timeline') }),
      kernelStartMs: number(t, 'kernelStartMs', 'status.timeline'),
      initMs: number(t, 'initMs', 'status.timeline'),
      agentListeningMs: number(t, 'agentListeningMs', 'status.timeline'),
      agentAnsweredMs: number(t, 'agentAnsweredMs', 'status.timeline'),
      sandboxReadyMs: number(t, 'sandboxReadyMs', 'status.timeline'),
    },
    containers: array(s, 'containers', 'status').map(container),
    processes: array(s, 'processes', 'status').map(hostProcess),
  };
}

/** What the sandbox's host processes cost together: PSS where known, else RSS. */
export function hostMemoryBytes(s: Pick<SandboxStatus, 'processes'>): number {
  return s.processes.reduce((sum, p) => sum + (p.pssBytes ?? p.rssBytes), 0);
}
