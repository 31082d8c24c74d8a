import { describe, expect, it } from 'vitest';
import { SpecError } from '../../shim/src/sandbox/errors.js';
import { placeHostNamespaces, planMounts, podNamespacesToJoin, type SourceFacts } from '../../shim/src/sandbox/pod-placement.js';

const CRI_SHM = '/var/lib/ctrd/state/io.containerd.grpc.v1.cri/sandboxes/p1/shm';
const EMPTY_DIR_MEM = '/var/lib/kubelet/pods/uid/volumes/kubernetes.io~empty-dir/cache';
const facts: Record<string, SourceFacts> = {
  [CRI_SHM]: { realPath: CRI_SHM, isDirectory: true, tmpfsSizeBytes: 64 << 20 },
  [EMPTY_DIR_MEM]: { realPath: EMPTY_DIR_MEM, isDirectory: true, tmpfsSizeBytes: 16 << 20 },
  '/srv/data': { realPath: '/srv/data', isDirectory: true },
  '/etc/link-to-hosts': { realPath: '/srv/pod/hosts', isDirectory: false },
  '/run/host-tmpfs': { realPath: '/run/host-tmpfs', isDirectory: true, tmpfsSizeBytes: 1 << 20 },
};
const lookup = (source: string) => facts[source];

describe('planMounts', () => {
  it('shares host paths, by their real path, read-only when asked, and leaves guest-local mounts alone', () => {
    const plan = planMounts(
      [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind', 'ro'] },
        { destination: '/etc/hosts', type: 'bind', source: '/etc/link-to-hosts', options: ['rbind', 'rprivate', 'rw'] },
        { destination: '/host-run', source: '/run/host-tmpfs', options: ['bind'] },
      ],
      lookup,
    );
    expect(plan).toEqual([
      { index: 1, kind: 'share', source: '/srv/data', isDirectory: true, readonly: true, recursive: true },
      { index: 2, kind: 'share', source: '/srv/pod/hosts', isDirectory: false, readonly: false, recursive: true },
      // A tmpfs that is neither the pod's /dev/shm nor an emptyDir is host content: shared.
      { index: 3, kind: 'share', source: '/run/host-tmpfs', isDirectory: true, readonly: false, recursive: false },
    ]);
  });

  it("gives the pod's /dev/shm and memory-backed emptyDirs a guest tmpfs of the host's size", () => {
    const plan = planMounts(
      [
        { destination: '/dev/shm', type: 'bind', source: CRI_SHM, options: ['rbind', 'rw'] },
        { destination: '/cache', type: 'bind', source: EMPTY_DIR_MEM, options: ['rbind', 'rw'] },
      ],
      lookup,
    );
    expect(plan).toEqual([
      { index: 0, kind: 'pod-tmpfs', name: 'shm', sizeBytes: 64 << 20 },
      { index: 1, kind: 'pod-tmpfs', name: 'empty-dir-cache', sizeBytes: 16 << 20 },
    ]);
  });

  it('names the mount whose source does not exist', () => {
    expect(() => planMounts([{ destination: '/data', type: 'bind', source: '/no/such/dir', options: ['rbind'] }], lookup)).toThrow(
      new SpecError('mount /data: bind source /no/such/dir does not exist on the host'),
    );
  });
});

describe('namespaces', () => {
  const all = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }];

  it("refuse a spec that shares the host's network, PID or IPC namespace, saying which", () => {
    const spec = { linux: { namespaces: all } };
    expect(placeHostNamespaces(spec, false)).toEqual({ spec, isolatedNetwork: false });
    let err: unknown;
    try {
      placeHostNamespaces({ linux: { namespaces: [{ type: 'uts' }, { type: 'mount' }, { type: 'ipc' }] } }, false);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SpecError);
    expect((err as SpecError).unsupported).toBe(true);
    expect((err as Error).message).toMatch(/host's network, pid namespaces/);
  });

  it('give a host-network spec an isolated network of its own only where the configuration allows it', () => {
    const hostNet = { linux: { namespaces: all.filter((ns) => ns.type !== 'network') } };
    expect(() => placeHostNamespaces(hostNet, false)).toThrow(/host's network namespace/);
    const placed = placeHostNamespaces(hostNet, true);
    expect(placed.isolatedNetwork).toBe(true);
    expect(placed.spec.linux.namespaces).toEqual([...hostNet.linux.namespaces, { type: 'network' }]);
    expect(hostNet.linux.namespaces).toHaveLength(4); // the caller's spec is left as it was
    // The host's PID namespace stays out of reach whatever the configuration says.
    expect(() => placeHostNamespaces({ linux: { namespaces: [{ type: 'ipc' }, { type: 'uts' }] } }, true)).toThrow(/host's pid namespace/);
  });

  it("are joined from the pod where a member's spec names them", () => {
    const member = {
      linux: {
        namespaces: [
          { type: 'ipc', path: '/proc/42/ns/ipc' },
          { type: 'uts', path: '/proc/42/ns/uts' },
          { type: 'network', path: '/proc/42/ns/net' },
          { type: 'pid' },
          { type: 'mount' },
        ],
      },
    };
    expect(podNamespacesToJoin(member, 'pod-member')).toEqual(['ipc', 'uts', 'network']);
    expect(podNamespacesToJoin({ linux: { namespaces: [...member.linux.namespaces, { type: 'pid', path: '/proc/42/ns/pid' }] } }, 'pod-member')).toContain('pid');
    // The sandbox's own network path is the host's CNI netns: it gets a fresh guest one.
    expect(podNamespacesToJoin({ linux: { namespaces: [{ type: 'network', path: '/var/run/netns/cni-1' }] } }, 'pod-sandbox')).toEqual([]);
    expect(podNamespacesToJoin(member, 'standalone')).toEqual([]);
  });
});
