// Turns the OCI spec the host sent into the spec crun runs in the guest.
// Pure: everything it needs is passed in, so unit tests cover it directly.
import { invalidArgument } from './errors.js';
import type { OciMount, OciProcess, OciSpec } from './oci-spec.js';

export interface GuestSpecInput {
  containerId: string;
  /** The container's rootfs as a guest path (under the virtio-fs share). */
  rootfsPath: string;
  /** Parent cgroup for containers, in cgroupfs syntax. */
  cgroupParent: string;
  /** Guest source of each bind mount, by its index in the spec's mounts (resolved and checked). */
  bindSources?: ReadonlyMap<number, string>;
  /** Namespaces joined from the pod, by OCI type: the guest path of the pod's namespace. */
  podNamespacePaths?: Readonly<Record<string, string>>;
}

export interface GuestSpecResult {
  spec: OciSpec;
  /** What was dropped or rewritten, for the log. */
  adjustments: string[];
}

/** Mount types that do not name a host path and work the same in the guest. */
const GUEST_LOCAL_MOUNT_TYPES = new Set(['proc', 'sysfs', 'tmpfs', 'devpts', 'mqueue', 'cgroup', 'cgroup2']);

export const isBindMount = (mount: OciMount) => (mount.type ?? 'bind') === 'bind' || (mount.options ?? []).some((o) => o === 'bind' || o === 'rbind');

/** The file under /proc/<pid>/ns/ of each namespace type a container may join from its pod. */
export const POD_NAMESPACE_FILES: Readonly<Record<string, string>> = { network: 'net', ipc: 'ipc', uts: 'uts', pid: 'pid' };

export function parseSpec(json: string): OciSpec {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw invalidArgument(`OCI spec is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidArgument('OCI spec must be a JSON object');
  const spec = value as OciSpec;
  if (typeof spec.ociVersion !== 'string') throw invalidArgument('OCI spec has no ociVersion');
  if (!spec.process) throw invalidArgument('OCI spec has no process');
  validateProcess(spec.process, 'process');
  return spec;
}

export function validateProcess(process: OciProcess, where: string): void {
  if (!Array.isArray(process.args) || process.args.length === 0 || process.args.some((a) => typeof a !== 'string'))
    throw invalidArgument(`${where}.args must be a non-empty list of strings`);
  if (typeof process.cwd !== 'string' || !process.cwd.startsWith('/')) throw invalidArgument(`${where}.cwd must be an absolute path`);
  if (!process.user || typeof process.user.uid !== 'number' || typeof process.user.gid !== 'number')
    throw invalidArgument(`${where}.user needs numeric uid and gid`);
}

/** Removes process fields the guest cannot honour (it has no LSM); the VM is the boundary. */
export function guestProcess(process: OciProcess, adjustments: string[]): OciProcess {
  const { apparmorProfile, selinuxLabel, ...rest } = process;
  if (apparmorProfile) adjustments.push(`dropped apparmorProfile ${apparmorProfile}: the guest kernel has no LSM`);
  if (selinuxLabel) adjustments.push(`dropped selinuxLabel: the guest kernel has no LSM`);
  return rest;
}

export function toGuestSpec(host: OciSpec, input: GuestSpecInput): GuestSpecResult {
  const adjustments: string[] = [];
  const spec: OciSpec = structuredClone(host);
  spec.root = { path: input.rootfsPath, readonly: host.root?.readonly ?? false };
  spec.process = guestProcess(host.process!, adjustments);

  (spec.mounts ?? []).forEach((mount, index) => {
    const type = mount.type ?? 'bind';
    const shared = input.bindSources?.get(index);
    if (isBindMount(mount) && shared !== undefined) {
      mount.source = shared;
      return;
    }
    if (isBindMount(mount) || !GUEST_LOCAL_MOUNT_TYPES.has(type))
      throw invalidArgument(
        `mount ${mount.destination} (type ${type}, source ${mount.source ?? '-'}) names a host path; the host must share it into the sandbox first`,
      );
  });

  if (spec.hooks && Object.keys(spec.hooks).length > 0) {
    adjustments.push('dropped OCI hooks: they run on the host, not in the guest');
    delete spec.hooks;
  }

  const linux = (spec.linux ??= {});
  linux.cgroupsPath = `${input.cgroupParent}/${input.containerId}`;
  if (linux.mountLabel) {
    adjustments.push('dropped linux.mountLabel: the guest kernel has no LSM');
    delete linux.mountLabel;
  }
  // Namespace paths name host namespaces. A container joins its pod's guest namespace of that
  // type when the host asked for it; otherwise it gets a fresh guest namespace.
  for (const ns of linux.namespaces ?? []) {
    const podPath = input.podNamespacePaths?.[ns.type];
    if (podPath) ns.path = podPath;
    else if (ns.path) {
      adjustments.push(`${ns.type} namespace path ${ns.path} replaced by a new guest namespace`);
      delete ns.path;
    }
  }
  return { spec, adjustments };
}
