// `kata-ts vm xml|argv [SANDBOX]`: a sandbox's VM as a libvirt domain XML
// document or as QEMU's exact argv, both rendered from the one VmDescription:
// the one a running sandbox was started with, or the one the configuration
// would start for a plain container.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isProcessAlive } from '../../../common/process-alive.js';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../containerd/config.js';
import { sandboxNameOnHost } from '../containerd/ids.js';
import { defaultShimSettings, SHIPPED_CONFIG_PATH } from '../containerd/shim-settings.js';
import { chooseAccel, chooseChannel, probeHost, type HostProbe } from '../hypervisor/accel.js';
import { renderLibvirtXml } from '../hypervisor/libvirt-xml.js';
import { qemuCommand } from '../hypervisor/qemu-args.js';
import type { VmDescription } from '../hypervisor/vm-description.js';
import { useVhostNet } from '../network/pod-network.js';
import { tapName } from '../network/tc-mirror.js';
import type { SandboxSettings } from '../sandbox/settings.js';
import { planVm } from '../sandbox/vm-plan.js';
import { localMac, randomGuestCid } from '../sandbox/vm-random.js';
import { findVmRecord } from '../sandbox/vm-records.js';

export const VM_USAGE = '  vm xml|argv [SANDBOX] [--config FILE] [--json]                    a sandbox VM as libvirt domain XML or QEMU argv (kata-ts vm --help)';

/** The name the VM of a plain container gets in these listings: a container `example` of containerd's default namespace. */
export const EXAMPLE_NAME = sandboxNameOnHost('default', 'example');

const HELP = `usage: kata-ts vm xml [SANDBOX] [--config FILE]
       kata-ts vm argv [SANDBOX] [--config FILE] [--json]

Shows a sandbox's VM, rendered from the one description QEMU is started from:
  xml    as a libvirt domain document (what libvirt would run; argv pieces that
         libvirt has no element for are named in comments)
  argv   as QEMU's exact command line (--json: a JSON array of its words)

SANDBOX is a running sandbox: its id (a container's or pod's id, a job's job-…),
or id@namespace where one id is in several containerd namespaces. Its VM is the
one recorded in its VM folder under the run root (runtime.run_root).
Without SANDBOX: the VM the configuration would start for a plain container
(ctr run, named ${EXAMPLE_NAME}), with this host's accel and agent channel; its
vsock context id and NIC MAC are drawn at random, as for every sandbox.
  --config FILE   the configuration file (default: /etc/kata-ts/configuration.toml, else the shipped one)`;

/**
 * The VM the shim starts for a plain container (`ctr run`): its spec asks for a network namespace
 * that CNI may fill after create, so QEMU gets a namespace of its own with one NIC.
 */
export function plainContainerVm(settings: SandboxSettings, probe: HostProbe, imageSizeBytes: number, vhostNet: boolean): VmDescription {
  const network = settings.networkModel === 'none' ? undefined : { kind: 'own-namespace' as const, tap: tapName(0), mac: localMac(), vhost: vhostNet };
  return planVm({
    name: EXAMPLE_NAME,
    settings,
    accel: chooseAccel(settings.accel, probe).value,
    channel: chooseChannel(settings.agentChannel, probe).value,
    guestCid: randomGuestCid(),
    imageSizeBytes,
    ...(network ? { network } : {}),
  });
}

const SHELL_SAFE = /^[A-Za-z0-9_/.,:=@%+-]+$/;
const shellWord = (w: string) => (SHELL_SAFE.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`);

/** The command as a shell would take it: the launcher words on the first line, then one QEMU option a line. */
export function shellCommand(argv: readonly string[], qemuBinary: string): string {
  const at = argv.indexOf(qemuBinary);
  const lines = [argv.slice(0, at + 1).map(shellWord).join(' ')];
  for (const word of argv.slice(at + 1)) {
    if (word.startsWith('-') || lines.length === 1) lines.push(shellWord(word));
    else lines[lines.length - 1] += ` ${shellWord(word)}`;
  }
  return `${lines.join(' \\\n  ')}\n`;
}

/** Whether the VM's QEMU still runs (by its pidfile): only for a warning, so a recycled pid does no harm. */
function qemuRunning(vmDir: string): boolean {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(join(vmDir, 'qemu.pid'), 'utf8'), 10);
  } catch {
    return false; // QEMU has not written it yet, or is gone
  }
  return isProcessAlive(pid);
}

async function describedVm(sandbox: string | undefined, settings: SandboxSettings): Promise<VmDescription> {
  if (sandbox === undefined) {
    const image = statSync(settings.imagePath, { throwIfNoEntry: false });
    if (!image?.isFile()) throw new Error(`the rootfs image ${settings.imagePath} (hypervisor.image) is missing: a VM needs its size`);
    return plainContainerVm(settings, probeHost(), image.size, useVhostNet(!settings.disableVhostNet));
  }
  const record = await findVmRecord(settings.runRoot, sandbox);
  if (!qemuRunning(record.vmDir)) process.stderr.write(`kata-ts vm: the QEMU of ${record.name} is not running; this is the VM it was started as\n`);
  return record.description;
}

export async function vmCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
    });
  } catch (err) {
    process.stderr.write(`kata-ts vm: ${(err as Error).message}\n${HELP}\n`);
    return 2;
  }
  const [what, sandbox, ...extra] = parsed.positionals;
  if (parsed.values.help || what === undefined) {
    process.stdout.write(`${HELP}\n`);
    return parsed.values.help ? 0 : 2;
  }
  const problem =
    what !== 'xml' && what !== 'argv'
      ? `unknown command ${JSON.stringify(what)}`
      : extra.length
        ? `one SANDBOX at most (got ${[sandbox, ...extra].join(' ')})`
        : what === 'xml' && parsed.values.json
          ? '--json is for argv'
          : undefined;
  if (problem) {
    process.stderr.write(`kata-ts vm: ${problem}\n${HELP}\n`);
    return 2;
  }
  try {
    const { settings } = loadConfig(defaultShimSettings(false), parsed.values.config, [DEFAULT_CONFIG_PATH, SHIPPED_CONFIG_PATH]);
    const d = await describedVm(sandbox, settings);
    if (what === 'xml') process.stdout.write(renderLibvirtXml(d));
    else if (parsed.values.json) process.stdout.write(`${JSON.stringify(qemuCommand(d))}\n`);
    else process.stdout.write(shellCommand(qemuCommand(d), d.qemuBinary));
    return 0;
  } catch (err) {
    process.stderr.write(`kata-ts vm: ${(err as Error).message}\n`);
    return 1;
  }
}
