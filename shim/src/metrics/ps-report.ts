// What `kata-ts ps` prints: a table for people, JSON for scripts. Pure.
import { hostMemoryBytes, type SandboxStatus } from './sandbox-status.js';

export interface Unreachable {
  runFolder: string;
  socket: string;
  error: string;
}

export interface PsSandbox extends SandboxStatus {
  uptimeSeconds: number;
  /** QEMU + virtiofsd + shim: PSS where known, else RSS. */
  hostMemoryBytes: number;
}

export interface PsReport {
  sandboxes: PsSandbox[];
  unreachable: Unreachable[];
}

export function psReport(statuses: readonly SandboxStatus[], unreachable: readonly Unreachable[], now: Date): PsReport {
  const sandboxes = [...statuses]
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.id.localeCompare(b.id))
    .map((s) => ({ ...s, uptimeSeconds: Math.max(0, Math.round((now.getTime() - Date.parse(s.startedAt)) / 1000)), hostMemoryBytes: hostMemoryBytes(s) }));
  return { sandboxes, unreachable: [...unreachable] };
}

/** CRI ids are 64 hex digits: the first 13 tell them apart, as crictl shows them. */
export function shortId(id: string): string {
  return /^[0-9a-f]{64}$/.test(id) ? id.slice(0, 13) : id;
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds}s`;
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d > 0) return `${d}d${h}h`;
  if (h > 0) return `${h}h${m}m`;
  return `${m}m${seconds % 60}s`;
}

export function formatBytes(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${mib.toFixed(mib < 10 ? 1 : 0)} MiB`;
}

const secs = (ms: number) => `${(ms / 1000).toFixed(2)}s`;

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  return rows.map((r) => r.map((cell, col) => (col === r.length - 1 ? cell : cell.padEnd(widths[col]!))).join('  '));
}

/** One row per sandbox, and under it its boot timeline, containers and host memory. */
export function renderPsTable(report: PsReport): string {
  const out: string[] = [];
  if (report.sandboxes.length === 0) out.push('no kata-ts sandboxes on this host');
  else {
    const header = ['SANDBOX', 'NAMESPACE', 'POD', 'CONTAINERS', 'ACCEL', 'CHANNEL', 'UPTIME', 'MEMORY'];
    const rows = report.sandboxes.map((s) => [
      shortId(s.id),
      s.namespace,
      s.pod ? `${s.pod.namespace}/${s.pod.name}` : '-',
      String(s.containers.length),
      s.accel,
      s.channel,
      formatDuration(s.uptimeSeconds),
      formatBytes(s.hostMemoryBytes),
    ]);
    const lines = table([header, ...rows]);
    out.push(lines[0]!);
    report.sandboxes.forEach((s, i) => {
      const t = s.timeline;
      out.push(lines[i + 1]!);
      const guest =
        t.boot === 'template'
          ? `restored from its template ${secs(t.restoredMs ?? 0)}`
          : `kernel ${secs(t.kernelStartMs)}  init ${secs(t.initMs)}  agent listening ${secs(t.agentListeningMs)}`;
      out.push(`  boot        ${guest}  answered ${secs(t.agentAnsweredMs)}  ready ${secs(t.sandboxReadyMs)}`);
      const containers = s.containers.map((c) => `${shortId(c.id)} ${c.status}${c.execs > 0 ? ` (${c.execs} exec${c.execs === 1 ? '' : 's'})` : ''}`);
      out.push(`  containers  ${containers.join(', ') || '-'}`);
      out.push(`  memory      ${s.processes.map((p) => `${p.role} ${formatBytes(p.pssBytes ?? p.rssBytes)}`).join('  ')}`);
    });
  }
  for (const u of report.unreachable) out.push(`unreachable: ${u.runFolder}: ${u.error}`);
  return `${out.join('\n')}\n`;
}
