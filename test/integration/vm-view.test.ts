// `kata-ts vm` on a real sandbox: the argv it prints is the running QEMU's
// own command line, and the XML of that VM validates against libvirt's schema.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it, vi } from 'vitest';
import { vmCommand } from '../../shim/src/cli/kata-ts-vm.js';
import { remainsOf, startSandbox, testSettings } from '../helpers/sandbox-harness.js';

const work = mkdtempSync(join(tmpdir(), 'kata-ts-vm-view-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function output(argv: string[]): Promise<string> {
  let out = '';
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  try {
    expect(await vmCommand(argv)).toBe(0);
  } finally {
    write.mockRestore();
  }
  return out;
}

it("shows a running sandbox's VM: its QEMU's exact argv, and libvirt XML that validates", async () => {
  const settings = testSettings();
  const config = join(work, 'configuration.toml');
  writeFileSync(config, `[runtime]\nrun_root = "${settings.runRoot}"\n`);
  const sandbox = await startSandbox();
  try {
    const argv = JSON.parse(await output(['argv', sandbox.id, '--json', '--config', config])) as string[];
    const running = readFileSync(`/proc/${sandbox.vm.pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
    expect(argv).toEqual(running);
    const file = join(work, 'vm.xml');
    writeFileSync(file, await output(['xml', sandbox.id, '--config', config]));
    const r = spawnSync('virt-xml-validate', [file, 'domain'], { encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toContain('validates');
  } finally {
    await sandbox.stop();
  }
  expect(remainsOf(sandbox)).toEqual({ processes: [], mounts: [], paths: [] });
});
