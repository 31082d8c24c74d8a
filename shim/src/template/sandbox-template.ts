// The template a sandbox's VM can be restored from: found by the key of its
// shape, or made now (on first use, by the first sandbox that needs it, while
// any other one boots cold). The template VM and a clone differ only in what
// is each sandbox's own; both have the same root ports, so every device keeps
// its PCI address.
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import { isProcessAlive } from '../../../common/process-alive.js';
import type { VmDescription } from '../hypervisor/vm-description.js';
import { templateInputs, templateKey } from './template-key.js';
import { TemplateStore, type Template } from './template-store.js';
import { makeTemplateVm } from './template-vm.js';

/** rp0 for the share, the others for NICs: a sandbox with more NICs boots cold. */
export const HOTPLUG_PORTS = 5;

/** The template VM of a sandbox's (cold) description: no share, no NICs, RAM in the template folder. */
export function templateVmDescription(d: VmDescription, key: string, runDir: string, dir: string): VmDescription {
  const { sharedFs: _fs, networks: _nets, ownNetworkNamespace: _netns, ...rest } = d;
  return {
    ...rest,
    name: `template-${key}`,
    // The agent then warms its paths up with a throw-away container before it says it listens.
    kernel: { ...d.kernel, cmdline: [...d.kernel.cmdline, 'kata_ts.template=1'] },
    ramFile: { path: join(dir, 'ram') },
    hotplugPorts: HOTPLUG_PORTS,
    // A vsock template VM takes the CID drawn for the sandbox: it is gone before the sandbox's VM starts.
    agentChannel: d.agentChannel.kind === 'serial' ? { ...d.agentChannel, socketPath: join(runDir, 'agent.sock') } : d.agentChannel,
    consoleLogPath: join(runDir, 'console.log'),
    qmpSocketPath: join(runDir, 'qmp.sock'),
    pidFilePath: join(runDir, 'qemu.pid'),
    // Whatever makes it, the template VM never outlives its maker.
    dieWithOwner: true,
  };
}

/** A sandbox's description restored from a template: RAM and state from passed fds after its taps, share and NICs added late. */
export function cloneDescription(d: VmDescription, passedTaps: number): VmDescription {
  return { ...d, ramFile: { fdIndex: passedTaps }, incoming: { fdIndex: passedTaps + 1 }, hotplugPorts: HOTPLUG_PORTS, lateDevices: true };
}

export interface TemplateChoice {
  store: TemplateStore;
  template: Template;
}

export interface TemplateRequest {
  /** The sandbox's cold-boot description. */
  description: VmDescription;
  templatePath: string;
  runRoot: string;
  bootTimeoutMs: number;
  log: Logger;
}

/** The template to restore from, made now if there is none; undefined (and why, logged) to boot cold. */
export async function templateFor(r: TemplateRequest): Promise<TemplateChoice | undefined> {
  if ((r.description.networks?.length ?? 0) > HOTPLUG_PORTS - 1) {
    r.log.info('booting cold: the sandbox has more NICs than a template has ports for them', { nics: r.description.networks?.length, ports: HOTPLUG_PORTS - 1 });
    return undefined;
  }
  const clone = cloneDescription(r.description, 0);
  const inputs = await templateInputs(clone);
  const key = templateKey(inputs);
  const store = new TemplateStore(r.templatePath, r.log);
  const found = await store.find(key);
  if (found) return { store, template: found };
  r.log.info('no sandbox template for this VM yet; making it', { key, path: store.dirOf(key) });
  await store.prune();
  const runRoot = join(r.runRoot, 'template');
  await sweepDeadMakers(runRoot);
  const runDir = join(runRoot, `${key}.${process.pid}`);
  try {
    const made = await store.make(key, inputs, (dir) =>
      makeTemplateVm({ description: templateVmDescription(r.description, key, runDir, dir), runDir, dir, bootTimeoutMs: r.bootTimeoutMs, log: r.log.child({ template: key }) }),
    );
    if (!made) r.log.info('booting cold: another process is making the template', { key });
    return made ? { store, template: made } : undefined;
  } catch (err) {
    r.log.warn('booting cold: the sandbox template could not be made', { key, error: (err as Error).message });
    return undefined;
  }
}

/** Run folders of template VMs whose maker died (its VM died with it). */
async function sweepDeadMakers(runRoot: string): Promise<void> {
  for (const entry of await readdir(runRoot).catch(() => [] as string[])) {
    const pid = Number(/\.(\d+)$/.exec(entry)?.[1] ?? 0);
    if (pid > 0 && !isProcessAlive(pid)) await rm(join(runRoot, entry), { recursive: true, force: true });
  }
}
