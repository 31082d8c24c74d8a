// Plain-text tables for `kata-ts check` and `kata-ts env`: what a person reads
// (scripts take --json).
import { ANNOTATION_PREFIX, type ResolvedKey } from '../containerd/config.js';
import type { CheckReport, Finding, Verdict } from './verdicts.js';
import type { VersionEntry } from './versions.js';

/** Columns padded to their widest cell; the last one runs on. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

const LABEL: Record<Verdict, string> = { ok: 'ok', degraded: 'DEGRADED', optional: 'optional', fatal: 'FATAL' };

const HEADLINE: Record<CheckReport['status'], string> = {
  ready: 'ready',
  degraded: 'runs degraded',
  'cannot-run': 'cannot run sandboxes',
};

export function renderCheck(report: CheckReport, strict: boolean): string {
  const worst = (v: Verdict) => report.findings.filter((f) => f.verdict === v).map((f: Finding) => f.requirement);
  const tcg = report.accel?.value === 'tcg' ? ['TCG software emulation'] : [];
  const degraded = [...tcg, ...worst('degraded').filter((r) => !tcg.length || r !== 'KVM usable')];
  const because = report.status === 'cannot-run' ? `: ${worst('fatal').join(', ')}` : report.status === 'degraded' ? `: ${degraded.join(', ')}` : '';
  const lines = [`kata-ts check: ${HEADLINE[report.status]}${because} (exit ${report.exitCode}${strict ? ', --strict' : ''})`];
  if (report.accel) lines.push(`  accel ${report.accel.value}: ${report.accel.reason}`);
  if (report.channel) lines.push(`  agent channel ${report.channel.value}: ${report.channel.reason}`);
  lines.push('');
  lines.push(table([['REQUIREMENT', 'VERDICT', 'REASON'], ...report.findings.map((f) => [f.requirement, LABEL[f.verdict], f.reason])]));
  return `${lines.join('\n')}\n`;
}

/** A value as the file would spell it; an unset tool key leaves the default to the command. */
function shown(key: string, value: unknown): string {
  if (value === undefined) return `(unset: kata-ts ${key.split('.')[0]}'s own default)`;
  return Array.isArray(value) ? `[${value.map((v) => JSON.stringify(v)).join(', ')}]` : JSON.stringify(value);
}

export function renderEnv(source: string, keys: ResolvedKey[], versions: VersionEntry[], runtimeRoot: string): string {
  const annotatable = keys.filter((k) => k.annotation).map((k) => k.key);
  const lines = [
    `configuration: ${source}`,
    `runtime folder: ${runtimeRoot}`,
    '',
    table([['KEY', 'VALUE', 'FROM'], ...keys.map((k) => [k.key, shown(k.key, k.value), k.origin + (k.annotation ? ' (annotations may override)' : '')])]),
    '',
    `Per sandbox, ${ANNOTATION_PREFIX}<key> annotations may override ${annotatable.join(', ') || 'no key'} (runtime.enable_annotations).`,
    '',
    table([['COMPONENT', 'VERSION', 'FROM'], ...versions.map((v) => [v.name, v.version ?? '(unknown)', v.from])]),
  ];
  return `${lines.join('\n')}\n`;
}
