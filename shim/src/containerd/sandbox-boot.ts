// Boots a shim's sandbox VM with the settings its configuration file and the
// task's annotations give. The shim starts this as soon as it runs, from the
// bundle containerd wrote before `start` and the runtime options `start`
// passed on: containerd's first Create would wait for the VM anyway, so the
// rest of the shim loads while the guest boots.
import type { Logger } from '../../../common/log.js';
import { ensureRunRoot, Sandbox } from '../sandbox/sandbox.js';
import { recordRunRoot } from './bundle-state.js';
import { applyAnnotations, DEFAULT_CONFIG_PATH, loadConfig } from './config.js';
import { sandboxNameOnHost } from './ids.js';
import { defaultShimSettings, SHIPPED_CONFIG_PATH } from './shim-settings.js';
import type { OciSpecLike } from './task-service.js';
import { podSandboxResources, sizeVm } from './vm-sizing.js';
import { placeHostNamespaces } from '../sandbox/pod-placement.js';
import { containerKind } from './annotations.js';

export interface SandboxRequest {
  namespace: string;
  sandboxId: string;
  /** The bundle of the task the sandbox is booted for; the run root is recorded there for `delete`. */
  bundle: string;
  /** That task's OCI spec: its annotations and resource limits size the VM. */
  spec: OciSpecLike;
  /** From the runtime options; undefined means the documented default path. */
  configPath: string | undefined;
}

export interface BootOptions {
  /** Called once QEMU runs (not if the boot fails before that). */
  onLaunched?: () => void;
  /** Ends the boot: the VM is stopped and everything of it removed. */
  signal?: AbortSignal;
}

export async function bootSandbox(req: SandboxRequest, debug: boolean, log: Logger, o: BootOptions = {}): Promise<Sandbox> {
  const config = loadConfig(defaultShimSettings(debug), req.configPath, [DEFAULT_CONFIG_PATH, SHIPPED_CONFIG_PATH]);
  const settings = applyAnnotations(config, req.spec.annotations);
  log.info('configuration', { source: config.source });
  // Before the VM boots: no VM for a spec no VM can run (Create reports it).
  placeHostNamespaces(req.spec, settings.hostNetwork === 'isolate');
  await ensureRunRoot(settings);
  await recordRunRoot(req.bundle, settings.runRoot);
  // A pod's VM holds all its containers: sized by the pod's limits, not its pause container's.
  const resources = containerKind(req.spec.annotations) === 'sandbox' ? podSandboxResources(req.spec.annotations) : req.spec.linux?.resources;
  const size = sizeVm({ cpus: settings.cpus, memoryMiB: settings.memoryMiB }, resources as never);
  const name = sandboxNameOnHost(req.namespace, req.sandboxId);
  // A CRI pod's namespace is filled by CNI before containerd starts the shim. A new network
  // namespace without a path may still get one after Create: ctr run --cni fills the task pid's.
  const network = req.spec.linux?.namespaces?.find((ns) => ns.type === 'network');
  return Sandbox.start(req.sandboxId, { ...settings, ...size }, log.child({ sandbox: req.sandboxId }), {
    name,
    ...(o.onLaunched ? { onLaunched: o.onLaunched } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(network?.path ? { netnsPath: network.path } : {}),
    lateNetwork: network !== undefined && !network.path,
  });
}
