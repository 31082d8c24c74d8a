// The pure parts of the metrics: the text format and its labels, the status
// a shim gives, /proc parsing on host and guest, and what `kata-ts ps` prints.
import { describe, expect, it } from 'vitest';
import { parseMeminfo, parseProcStatCpu } from '../../agent/src/guest-metrics.js';
import { addLabels, labelFamilies, parseExposition, renderFamilies } from '../../shim/src/metrics/exposition.js';
import { parseListenAddress, sandboxLabels } from '../../shim/src/metrics/host-monitor.js';
import { parseCpuSeconds, parseKbField } from '../../shim/src/metrics/process-usage.js';
import { formatDuration, psReport, renderPsTable, shortId } from '../../shim/src/metrics/ps-report.js';
import { hostMemoryBytes, parseSandboxStatus, StatusFormatError, type SandboxStatus } from '../../shim/src/metrics/sandbox-status.js';
import { POD_ID, sampleStatus } from '../helpers/metrics-fixtures.js';

describe('the text format', () => {
  const text = `# HELP kata_ts_boot_phase_seconds Seconds from QEMU's spawn to each boot phase.
# TYPE kata_ts_boot_phase_seconds gauge
kata_ts_boot_phase_seconds{phase="init"} 0.45
kata_ts_boot_phase_seconds{phase="sandbox_ready"} 2.41

# HELP kata_ts_agent_rpc_duration_seconds Time of agent calls.
# TYPE kata_ts_agent_rpc_duration_seconds histogram
kata_ts_agent_rpc_duration_seconds_bucket{le="0.1",method="check",outcome="ok"} 3
kata_ts_agent_rpc_duration_seconds_bucket{le="+Inf",method="check",outcome="ok"} 4
kata_ts_agent_rpc_duration_seconds_sum{method="check",outcome="ok"} 0.31
kata_ts_agent_rpc_duration_seconds_count{method="check",outcome="ok"} 4
# TYPE kata_ts_execs gauge
kata_ts_execs 2
stray_metric 1 1700000000000
`;

  it('reads families with their HELP, TYPE and every sample, histogram suffixes included', () => {
    const families = parseExposition(text);
    expect(families.map((f) => [f.name, f.type, f.samples.length])).toEqual([
      ['kata_ts_boot_phase_seconds', 'gauge', 2],
      ['kata_ts_agent_rpc_duration_seconds', 'histogram', 4],
      ['kata_ts_execs', 'gauge', 1],
      ['stray_metric', undefined, 1],
    ]);
    expect(families[0]!.help).toBe("Seconds from QEMU's spawn to each boot phase.");
  });

  it('puts the sandbox labels first, on samples with and without labels, keeping value and timestamp', () => {
    const labels = [
      ['sandbox_id', 'p1'],
      ['namespace', 'k8s.io'],
    ] as const;
    expect(addLabels('kata_ts_execs 2', labels)).toBe('kata_ts_execs{sandbox_id="p1",namespace="k8s.io"} 2');
    expect(addLabels('stray_metric 1 1700000000000', labels)).toBe('stray_metric{sandbox_id="p1",namespace="k8s.io"} 1 1700000000000');
    expect(addLabels('m{phase="init"} 0.45', labels)).toBe('m{sandbox_id="p1",namespace="k8s.io",phase="init"} 0.45');
    expect(addLabels('m{} 1', labels)).toBe('m{sandbox_id="p1",namespace="k8s.io"} 1');
    expect(addLabels('m{a="x",} 1', labels)).toBe('m{sandbox_id="p1",namespace="k8s.io",a="x"} 1');
  });

  it('reads label values with escapes, braces and commas in them', () => {
    expect(addLabels('m{path="a,b}c\\"d\\\\",x="y"} 7', [['sandbox_id', 's']])).toBe('m{sandbox_id="s",path="a,b}c\\"d\\\\",x="y"} 7');
  });

  it('escapes the values it adds', () => {
    expect(addLabels('m 1', [['pod_name', 'a"b\\c\nd']])).toBe('m{pod_name="a\\"b\\\\c\\nd"} 1');
  });

  it('keeps a label the sample has already as exported_<name>', () => {
    expect(addLabels('m{namespace="guest",a="1"} 1', [['namespace', 'k8s.io']])).toBe('m{namespace="k8s.io",exported_namespace="guest",a="1"} 1');
  });

  it('refuses what is not a sample', () => {
    expect(addLabels('{a="1"} 1', [])).toBeUndefined();
    expect(addLabels('m{a=1} 1', [])).toBeUndefined();
    expect(addLabels('m{a="1 1', [])).toBeUndefined();
  });

  it('writes two sandboxes’ families as one exposition, each family once and in one piece', () => {
    const one = labelFamilies(parseExposition(text), [['sandbox_id', 'one']]);
    const two = labelFamilies(parseExposition(text), [['sandbox_id', 'two']]);
    const out = renderFamilies([one, two]);
    expect(out.match(/^# TYPE kata_ts_boot_phase_seconds gauge$/gm)).toHaveLength(1);
    expect(out.match(/^# HELP kata_ts_agent_rpc_duration_seconds /gm)).toHaveLength(1);
    const lines = out.trimEnd().split('\n');
    const boot = lines.filter((l) => l.startsWith('kata_ts_boot_phase_seconds{'));
    expect(boot).toEqual([
      'kata_ts_boot_phase_seconds{sandbox_id="one",phase="init"} 0.45',
      'kata_ts_boot_phase_seconds{sandbox_id="one",phase="sandbox_ready"} 2.41',
      'kata_ts_boot_phase_seconds{sandbox_id="two",phase="init"} 0.45',
      'kata_ts_boot_phase_seconds{sandbox_id="two",phase="sandbox_ready"} 2.41',
    ]);
    // Contiguous: the family's lines come right after its TYPE line.
    const typeAt = lines.indexOf('# TYPE kata_ts_boot_phase_seconds gauge');
    expect(lines.slice(typeAt + 1, typeAt + 5)).toEqual(boot);
    expect(out.endsWith('\n')).toBe(true);
  });

  it('labels a sandbox by id and namespace, and by pod when it is one', () => {
    expect(sandboxLabels({ id: 'c1', namespace: 'default' })).toEqual([
      ['sandbox_id', 'c1'],
      ['namespace', 'default'],
    ]);
    expect(sandboxLabels({ id: 'p', namespace: 'k8s.io', pod: { name: 'web', namespace: 'e2e', uid: 'u' } }).map(([k]) => k)).toEqual([
      'sandbox_id',
      'namespace',
      'pod_name',
      'pod_namespace',
      'pod_uid',
    ]);
  });
});

describe('the sandbox status', () => {
  it('reads what a shim writes, pod or not', () => {
    const status = sampleStatus();
    expect(parseSandboxStatus(JSON.stringify(status))).toEqual(status);
    const { pod: _pod, ...plain } = status;
    expect(parseSandboxStatus(JSON.stringify(plain))).toEqual(plain);
    expect(parseSandboxStatus(JSON.stringify({ ...plain, pod: null }))).toEqual(plain);
  });

  it('names the field that is wrong', () => {
    const bad = (over: Record<string, unknown>) => () => parseSandboxStatus(JSON.stringify({ ...sampleStatus(), ...over }));
    expect(bad({ version: 2 })).toThrow(/version 2 is not 1/);
    expect(bad({ timeline: { ...sampleStatus().timeline, initMs: 'x' } })).toThrow(/status\.timeline\.initMs is not a number/);
    expect(bad({ containers: [{ id: 'c', status: 'running' }] })).toThrow(/containers\[0\]\.execs/);
    expect(bad({ processes: [{ role: 'slirp', pid: 1, rssBytes: 1, pssBytes: 1, cpuSeconds: 0 }] })).toThrow(/processes\[0\]\.role/);
    expect(bad({ startedAt: 'yesterday' })).toThrow(/startedAt/);
    expect(() => parseSandboxStatus('<html>')).toThrow(StatusFormatError);
  });

  it('counts host memory as PSS where known, RSS where not', () => {
    expect(hostMemoryBytes(sampleStatus())).toBe((200 << 20) + (4 << 20) + (60 << 20));
  });
});

describe('/proc parsing', () => {
  it('reads user plus system time from /proc/<pid>/stat, whatever the command name holds', () => {
    const fields = ['S', '1', '1', '1', '0', '-1', '4194560', '100', '0', '0', '0', '250', '50', '0', '0', '20', '0', '3', '0', '12345'];
    expect(parseCpuSeconds(`4242 (qemu) x (y)) ${fields.join(' ')}`)).toBe(3);
    expect(parseCpuSeconds('4242 (short) S 1')).toBeUndefined();
  });

  it('reads kB fields of status and smaps_rollup as bytes', () => {
    const status = 'Name:\tqemu\nVmPeak:\t  900 kB\nVmRSS:\t  204800 kB\nThreads:\t4\n';
    expect(parseKbField(status, 'VmRSS')).toBe(204800 * 1024);
    expect(parseKbField(status, 'VmHWM')).toBeUndefined();
    const rollup = '55a0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:              210000 kB\nPss:              150000 kB\nPss_Anon:          20000 kB\n';
    expect(parseKbField(rollup, 'Pss')).toBe(150000 * 1024);
  });

  it('reads the guest’s meminfo in bytes and its CPU line in microseconds', () => {
    const meminfo = parseMeminfo('MemTotal:         243364 kB\nMemFree:          180000 kB\nMemAvailable:     200000 kB\nHugePages_Total:       0\n');
    expect(meminfo.get('MemTotal')).toBe(243364 * 1024);
    expect(meminfo.get('MemAvailable')).toBe(200000 * 1024);
    expect(meminfo.get('HugePages_Total')).toBe(0);
    expect(parseProcStatCpu('cpu  10 1 20 300 4 0 2 0 0 0\ncpu0 10 1 20 300 4 0 2 0 0 0\n')).toEqual({
      userUsec: 100_000,
      niceUsec: 10_000,
      systemUsec: 200_000,
      idleUsec: 3_000_000,
      iowaitUsec: 40_000,
      irqUsec: 0,
      softirqUsec: 20_000,
      stealUsec: 0,
    });
    expect(parseProcStatCpu('').idleUsec).toBe(0);
  });
});

describe('kata-ts monitor --listen', () => {
  it('takes HOST:PORT, [IPV6]:PORT and :PORT', () => {
    expect(parseListenAddress('127.0.0.1:9100')).toEqual({ host: '127.0.0.1', port: 9100 });
    expect(parseListenAddress('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListenAddress(':8090')).toEqual({ host: undefined, port: 8090 });
    expect(() => parseListenAddress('9100')).toThrow(/HOST:PORT/);
    expect(() => parseListenAddress('localhost:70000')).toThrow(/over 65535/);
  });
});

describe('kata-ts ps', () => {
  const now = new Date('2026-01-01T00:02:13.000Z');

  it('adds uptime and host memory, sorted by namespace and id', () => {
    const report = psReport([sampleStatus(), sampleStatus({ id: 'c1', namespace: 'default', pod: undefined } as Partial<SandboxStatus>)], [], now);
    expect(report.sandboxes.map((s) => [s.namespace, s.uptimeSeconds])).toEqual([
      ['default', 133],
      ['k8s.io', 133],
    ]);
    expect(report.sandboxes[1]!.hostMemoryBytes).toBe(hostMemoryBytes(sampleStatus()));
  });

  it('prints a row per sandbox with its timeline, containers and memory under it', () => {
    const out = renderPsTable(psReport([sampleStatus()], [{ runFolder: 'x@default', socket: '/run/kata-ts/vm/x@default/monitor.sock', error: 'no answer within 3000 ms' }], now));
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SANDBOX\s+NAMESPACE\s+POD\s+CONTAINERS\s+ACCEL\s+CHANNEL\s+UPTIME\s+MEMORY$/);
    expect(lines[1]).toMatch(/^fffffffffffff\s+k8s\.io\s+e2e\/web\s+2\s+tcg\s+serial\s+2m13s\s+264 MiB$/);
    expect(lines[2]).toBe('  boot        kernel 0.12s  init 0.45s  agent listening 1.50s  answered 1.90s  ready 2.41s');
    expect(lines[3]).toBe('  containers  fffffffffffff running, aaaaaaaaaaaaa running (2 execs)');
    expect(lines[4]).toBe('  memory      qemu 200 MiB  virtiofsd 4.0 MiB  shim 60 MiB');
    expect(lines[5]).toBe('unreachable: x@default: no answer within 3000 ms');
    expect(renderPsTable(psReport([], [], now))).toBe('no kata-ts sandboxes on this host\n');
  });

  it('shortens CRI ids only', () => {
    expect(shortId(POD_ID)).toBe('fffffffffffff');
    expect(shortId('web-1')).toBe('web-1');
    expect([formatDuration(5), formatDuration(3700), formatDuration(90000)]).toEqual(['5s', '1h1m', '1d1h']);
  });
});
