// The Prometheus text format, as far as `kata-ts monitor` needs it: read the
// metric families of each shim, add the labels that say which sandbox a
// sample is of, and write all shims' families as one exposition, each family
// once and in one piece (Prometheus refuses a family that comes twice).

export interface MetricFamily {
  name: string;
  /** As written after `# HELP name ` (escaped already). */
  help?: string;
  type?: string;
  /** Sample lines as written. */
  samples: string[];
}

export type LabelPairs = readonly (readonly [name: string, value: string])[];

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
/** Sample names of a family beyond its own: histograms, summaries, and OpenMetrics counters. */
const SUFFIXES = ['_bucket', '_sum', '_count', '_total', '_created'];

/** The families of one exposition, in order; samples without HELP or TYPE form a family of their own name. */
export function parseExposition(text: string): MetricFamily[] {
  const families = new Map<string, MetricFamily>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, samples: [] }));
    return f;
  };
  let current: MetricFamily | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const meta = /^#\s+(HELP|TYPE)\s+([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\s(.*))?$/.exec(line);
    if (meta) {
      current = family(meta[2]!);
      if (meta[1] === 'HELP') current.help = meta[3] ?? '';
      else current.type = (meta[3] ?? 'untyped').trim();
      continue;
    }
    if (line.startsWith('#')) continue;
    const name = METRIC_NAME.exec(line)?.[0];
    if (!name) continue;
    // A histogram's _bucket, _sum and _count lines belong to the family its TYPE named.
    const owner = current && (name === current.name || SUFFIXES.some((suffix) => name === current!.name + suffix)) ? current : family(name);
    owner.samples.push(line);
  }
  return [...families.values()];
}

/** Escapes a label value for the text format. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** The label names of a sample's `{…}` and where it ends; undefined if it is malformed. */
function scanLabels(line: string, open: number): { names: { name: string; at: number }[]; close: number } | undefined {
  const names: { name: string; at: number }[] = [];
  let i = open + 1;
  for (;;) {
    while (line[i] === ' ' || line[i] === ',') i++;
    if (line[i] === '}') return { names, close: i };
    const name = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i))?.[0];
    if (!name) return undefined;
    names.push({ name, at: i });
    i += name.length;
    while (line[i] === ' ') i++;
    if (line[i] !== '=') return undefined;
    i++;
    while (line[i] === ' ') i++;
    if (line[i] !== '"') return undefined;
    for (i++; i < line.length && line[i] !== '"'; i++) if (line[i] === '\\') i++;
    if (i >= line.length) return undefined;
    i++;
  }
}

/**
 * The sample with `labels` first. A label the sample has already is kept as
 * exported_<name>, as Prometheus does with a target's labels; undefined for a
 * line that is not a sample.
 */
export function addLabels(sample: string, labels: LabelPairs): string | undefined {
  const name = METRIC_NAME.exec(sample)?.[0];
  if (!name) return undefined;
  const added = labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',');
  const rest = sample.slice(name.length);
  if (!rest.startsWith('{')) return added ? `${name}{${added}}${rest}` : sample;
  const scanned = scanLabels(rest, 0);
  if (!scanned) return undefined;
  const taken = new Set(labels.map(([k]) => k));
  let inner = rest.slice(1, scanned.close);
  // From the last clash backwards, so the earlier offsets stay right.
  for (const { name: label, at } of [...scanned.names].reverse())
    if (taken.has(label)) inner = `${inner.slice(0, at - 1)}exported_${inner.slice(at - 1)}`;
  const all = [added, inner.trim().replace(/,$/, '')].filter((part) => part !== '').join(',');
  return `${name}{${all}}${rest.slice(scanned.close + 1)}`;
}

/** The families of one source with its labels on every sample; malformed samples are dropped. */
export function labelFamilies(families: readonly MetricFamily[], labels: LabelPairs): MetricFamily[] {
  return families.map((f) => ({ ...f, samples: f.samples.flatMap((s) => addLabels(s, labels) ?? []) }));
}

/** One exposition of many sources' families: each family once, its HELP and TYPE from the first that has them. */
export function renderFamilies(sources: readonly (readonly MetricFamily[])[]): string {
  const merged = new Map<string, MetricFamily>();
  for (const families of sources)
    for (const f of families) {
      const m = merged.get(f.name);
      if (!m) merged.set(f.name, { ...f, samples: [...f.samples] });
      else {
        m.help ??= f.help;
        m.type ??= f.type;
        m.samples.push(...f.samples);
      }
    }
  const lines: string[] = [];
  for (const f of merged.values()) {
    if (f.samples.length === 0) continue;
    if (f.help !== undefined) lines.push(`# HELP ${f.name} ${f.help}`);
    if (f.type !== undefined) lines.push(`# TYPE ${f.name} ${f.type}`);
    lines.push(...f.samples);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}
