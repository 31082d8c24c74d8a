import { describe, expect, it } from 'vitest';
import { AgentError } from '../../agent/src/errors.js';
import { parseSpec, toGuestSpec } from '../../agent/src/guest-spec.js';
import { defaultSpec } from '../../shim/src/sandbox/default-spec.js';

const input = { containerId: 'c1', rootfsPath: '/run/kata-ts/shared/c1/rootfs', cgroupParent: '/kata-ts' };

describe('toGuestSpec', () => {
  it('points root at the shared rootfs and the cgroup under the containers parent', () => {
    const host = parseSpec(JSON.stringify(defaultSpec({ args: ['sh'], readonlyRootfs: true })));
    const { spec, adjustments } = toGuestSpec(host, input);
    expect(spec.root).toEqual({ path: '/run/kata-ts/shared/c1/rootfs', readonly: true });
    expect(spec.linux?.cgroupsPath).toBe('/kata-ts/c1');
    expect(spec.process).toEqual(host.process);
    expect(spec.mounts).toEqual(host.mounts);
    expect(adjustments).toEqual([]);
  });

  it('replaces host namespace paths and drops what the guest cannot honour, saying so', () => {
    const host = parseSpec(
      JSON.stringify({
        ...defaultSpec({ args: ['sh'] }),
        hooks: { poststart: [{ path: '/bin/true' }] },
        process: { ...(defaultSpec({ args: ['sh'] }).process as object), apparmorProfile: 'cri-containerd.apparmor.d' },
        linux: { namespaces: [{ type: 'network', path: '/var/run/netns/cni-1' }, { type: 'pid' }] },
      }),
    );
    const { spec, adjustments } = toGuestSpec(host, input);
    expect(spec.linux?.namespaces).toEqual([{ type: 'network' }, { type: 'pid' }]);
    expect(spec.hooks).toBeUndefined();
    expect(spec.process?.apparmorProfile).toBeUndefined();
    expect(adjustments).toHaveLength(3);
  });

  it('refuses bind mounts of host paths with an error that names the mount', () => {
    const host = parseSpec(JSON.stringify({ ...defaultSpec({ args: ['sh'] }), mounts: [{ destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind'] }] }));
    expect(() => toGuestSpec(host, input)).toThrow(/\/data.*\/srv\/data/);
  });
});

describe('toGuestSpec in a pod', () => {
  it("binds shared sources and joins the pod's namespaces by type", () => {
    const host = parseSpec(
      JSON.stringify({
        ...defaultSpec({ args: ['sh'] }),
        mounts: [
          { destination: '/proc', type: 'proc', source: 'proc' },
          { destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind', 'ro'] },
        ],
        linux: { namespaces: [{ type: 'network', path: '/proc/7/ns/net' }, { type: 'pid' }, { type: 'ipc', path: '/proc/7/ns/ipc' }] },
      }),
    );
    const { spec } = toGuestSpec(host, {
      ...input,
      bindSources: new Map([[1, '/run/kata-ts/shared/c1/mounts/1']]),
      podNamespacePaths: { network: '/proc/99/ns/net', ipc: '/proc/99/ns/ipc' },
    });
    expect(spec.mounts?.[1]).toEqual({ destination: '/data', type: 'bind', source: '/run/kata-ts/shared/c1/mounts/1', options: ['rbind', 'ro'] });
    expect(spec.linux?.namespaces).toEqual([{ type: 'network', path: '/proc/99/ns/net' }, { type: 'pid' }, { type: 'ipc', path: '/proc/99/ns/ipc' }]);
  });
});

describe('parseSpec', () => {
  it.each([
    ['not json', /not valid JSON/],
    ['[]', /JSON object/],
    ['{"process":{}}', /ociVersion/],
    ['{"ociVersion":"1.0.2","process":{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}}', /args/],
    ['{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"rel","user":{"uid":0,"gid":0}}}', /cwd/],
  ])('rejects %s as INVALID_ARGUMENT', (json, message) => {
    let err: unknown;
    try {
      parseSpec(json);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).code).toBe(3);
    expect((err as Error).message).toMatch(message);
  });
});
