// The built `kata-ts check` and `kata-ts env` on this host, as an operator
// runs them. No VM boots: check only reads the host and runs QEMU's --version
// and help.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/containerd.js';

const KATA_TS = join(REPO, 'build/bin/kata-ts');
const run = (args: string[]) => {
  const r = spawnSync(KATA_TS, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};
/** This kind of machine: a PVM KVM, which cannot run a stock guest kernel. */
const pvm = existsSync('/sys/module/kvm_pvm') && !existsSync('/sys/module/kvm_intel') && !existsSync('/sys/module/kvm_amd');

interface Report {
  status: string;
  exitCode: number;
  accel?: { value: string; reason: string };
  findings: { id: string; requirement: string; verdict: string; reason: string }[];
}

describe('kata-ts check on this host', () => {
  it('--json parses and its exit code is the process’s', () => {
    const r = run(['check', '--json']);
    const report = JSON.parse(r.stdout) as Report;
    expect(r.code).toBe(report.exitCode);
    expect(report.findings.map((f) => f.id)).toEqual(expect.arrayContaining(['kvm', 'kvm-device', 'vhost-vsock', 'vhost-net', 'tun', 'qemu', 'virtiofsd', 'cgroups', 'guest-kernel', 'guest-rootfs', 'shim-on-path', 'socket-folder', 'templates', 'ksm']));
    for (const f of report.findings) expect(['ok', 'degraded', 'optional', 'fatal']).toContain(f.verdict);
  });

  it.runIf(pvm)('exits 2 under PVM, saying it cannot run a stock guest and that TCG is used', () => {
    const r = run(['check', '--json']);
    const report = JSON.parse(r.stdout) as Report;
    expect(r.code).toBe(2);
    expect(report.status).toBe('degraded');
    expect(report.accel?.value).toBe('tcg');
    const kvm = report.findings.find((f) => f.id === 'kvm');
    expect(kvm?.verdict).toBe('degraded');
    expect(kvm?.reason).toMatch(/PVM \(kvm_pvm\), which cannot run a stock guest kernel; TCG software emulation will be used/);
    expect(report.findings.filter((f) => f.verdict === 'fatal')).toEqual([]);
  });

  it.runIf(pvm)('exits 1 there with --strict, and prints a table without --json', () => {
    expect(run(['check', '--strict', '--json']).code).toBe(1);
    const table = run(['check']);
    expect(table.code).toBe(2);
    expect(table.stdout).toMatch(/^kata-ts check: runs degraded: TCG software emulation \(exit 2\)/);
    expect(table.stdout).toMatch(/^KVM usable +DEGRADED +\/dev\/kvm is PVM/m);
  });

  it('a configuration that the shim would refuse cannot run (exit 1)', () => {
    const r = run(['check', '--json', '--config', '/nonexistent/kata-ts.toml']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.findings[0]).toMatchObject({ id: 'configuration', verdict: 'fatal' });
  });
});

describe('kata-ts env on this host', () => {
  it('--json gives every key with its origin, and the versions', () => {
    const r = run(['env', '--json']);
    expect(r.code).toBe(0);
    const env = JSON.parse(r.stdout) as { configuration: string; keys: { key: string; origin: string; annotation: boolean }[]; versions: { name: string; version: string | null }[] };
    expect(env.keys.find((k) => k.key === 'hypervisor.accel')?.origin).toBe(env.configuration);
    expect(env.keys.find((k) => k.key === 'hypervisor.default_memory')?.annotation).toBe(true);
    const versions = Object.fromEntries(env.versions.map((v) => [v.name, v.version]));
    expect(versions['kata-ts']).toMatch(/^\d+\.\d+\.\d+$/);
    expect(versions.node).toBe(process.version);
    expect(versions.QEMU).toMatch(/^\d+\.\d+/);
    expect(versions['guest kernel']).toMatch(/kata-ts$/);
  });
});
