// How a container's spec lands in its sandbox VM: which of its bind mounts the
// host shares into the virtio-fs tree and which become a tmpfs of the pod in
// the guest, and which of the pod's namespaces it joins. Pure: the facts about
// the host paths come in, so unit tests cover every case.
import { SpecError } from './errors.js';

/** A pod's own sandbox container (its pause), a container of a pod, or a container alone in its VM. */
export type PodRole = 'pod-sandbox' | 'pod-member' | 'standalone';

export interface SpecMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface SpecLike {
  mounts?: SpecMount[];
  linux?: { namespaces?: { type: string; path?: string }[] };
}

/** What the host knows of a bind source. */
export interface SourceFacts {
  /** With every symlink resolved. */
  realPath: string;
  isDirectory: boolean;
  /** Set when the source is itself a tmpfs mount: its size in bytes. */
  tmpfsSizeBytes?: number;
}

export type PlannedMount =
  | { index: number; kind: 'share'; source: string; isDirectory: boolean; readonly: boolean; recursive: boolean }
  | { index: number; kind: 'pod-tmpfs'; name: string; sizeBytes: number };

/** Namespaces a VM cannot share with the host: a spec without one of these asks for the host's. */
const REQUIRED_NAMESPACES = ['network', 'pid', 'ipc'] as const;
/** What a pod member may join from its pod's sandbox container. */
const JOINABLE_NAMESPACES = new Set(['network', 'ipc', 'uts', 'pid']);
const EMPTY_DIR = '/kubernetes.io~empty-dir/';

export const isBind = (m: SpecMount) => (m.type ?? 'bind') === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');

/**
 * The place of each bind mount: a tmpfs of the pod for the pod's /dev/shm and for memory-backed
 * emptyDir volumes (a tmpfs on the host: the guest gets its own of the same size, shared by the
 * pod's containers), a share of the host path for everything else. facts(source) is undefined
 * for a source that does not exist.
 */
export function planMounts(mounts: readonly SpecMount[], facts: (source: string) => SourceFacts | undefined): PlannedMount[] {
  const plan: PlannedMount[] = [];
  mounts.forEach((mount, index) => {
    if (!isBind(mount)) return;
    if (!mount.source) throw new SpecError(`mount ${mount.destination}: a bind mount needs a source`);
    const found = facts(mount.source);
    if (!found) throw new SpecError(`mount ${mount.destination}: bind source ${mount.source} does not exist on the host`);
    const options = mount.options ?? [];
    if (found.tmpfsSizeBytes !== undefined && mount.destination === '/dev/shm') {
      plan.push({ index, kind: 'pod-tmpfs', name: 'shm', sizeBytes: found.tmpfsSizeBytes });
    } else if (found.tmpfsSizeBytes !== undefined && found.realPath.includes(EMPTY_DIR)) {
      const volume = found.realPath.slice(found.realPath.lastIndexOf('/') + 1);
      plan.push({ index, kind: 'pod-tmpfs', name: `empty-dir-${volume}`, sizeBytes: found.tmpfsSizeBytes });
    } else {
      plan.push({
        index,
        kind: 'share',
        source: found.realPath,
        isDirectory: found.isDirectory,
        readonly: options.includes('ro'),
        recursive: options.includes('rbind'),
      });
    }
  });
  return plan;
}

/**
 * What a VM can make of a spec's namespaces. For containerd a namespace missing from the spec is
 * the host's (runc stays in it), and no VM can give the host's network, PID or IPC namespace: that
 * fails, unless `isolateHostNetwork` allows running a host-network spec on an isolated guest
 * network, and then the spec comes back with a network namespace of its own. The sandbox library
 * alone takes a missing namespace as the guest's, so only the containerd layer calls this.
 */
export function placeHostNamespaces<T extends SpecLike>(spec: T, isolateHostNetwork: boolean): { spec: T; isolatedNetwork: boolean } {
  const present = new Set((spec.linux?.namespaces ?? []).map((ns) => ns.type));
  const missing = REQUIRED_NAMESPACES.filter((type) => !present.has(type) && !(type === 'network' && isolateHostNetwork));
  if (missing.length > 0)
    throw new SpecError(
      `the spec shares the host's ${missing.join(', ')} namespace${missing.length > 1 ? 's' : ''} (hostNetwork, hostPID or hostIPC; ctr --net-host); ` +
        'a container in a VM cannot share namespaces with the host',
      true,
    );
  if (present.has('network')) return { spec, isolatedNetwork: false };
  const linux = { ...spec.linux, namespaces: [...(spec.linux?.namespaces ?? []), { type: 'network' }] };
  return { spec: { ...spec, linux }, isolatedNetwork: true };
}

/** The namespace types a pod member joins: those its spec names a path for (its sandbox's). */
export function podNamespacesToJoin(spec: SpecLike, role: PodRole): string[] {
  if (role !== 'pod-member') return [];
  return (spec.linux?.namespaces ?? []).filter((ns) => ns.path && JOINABLE_NAMESPACES.has(ns.type)).map((ns) => ns.type);
}
