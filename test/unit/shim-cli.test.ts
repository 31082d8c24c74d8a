import { describe, expect, it } from 'vitest';
import { socketPath } from '../../shim/src/containerd/address.js';
import { containerKind, sandboxIdOf } from '../../shim/src/containerd/annotations.js';
import { parseFlags } from '../../shim/src/containerd/flags.js';
import { podSandboxResources, SizeAnnotationError, sizeVm } from '../../shim/src/containerd/vm-sizing.js';
import { loggerCommand } from '../../shim/src/containerd/binary-logger.js';
import { stdioTarget } from '../../shim/src/containerd/stdio.js';

describe('shim command line', () => {
  it('parses what containerd 1.6 passes to start and delete', () => {
    expect(parseFlags(['-namespace', 'default', '-address', '/run/containerd/containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 't1', '-debug', 'start'])).toMatchObject({
      namespace: 'default',
      address: '/run/containerd/containerd.sock',
      publishBinary: '/usr/bin/containerd',
      id: 't1',
      debug: true,
      action: 'start',
    });
    expect(parseFlags(['-namespace=k8s.io', '--id', 'c', '-bundle', '/b', 'delete'])).toMatchObject({ namespace: 'k8s.io', id: 'c', bundle: '/b', action: 'delete' });
    expect(parseFlags(['-v']).version).toBe(true);
  });

  it('rejects unknown flags and actions', () => {
    expect(() => parseFlags(['-bogus', 'x'])).toThrow('flag provided but not defined: -bogus');
    expect(() => parseFlags(['-id'])).toThrow('flag needs an argument: -id');
    expect(() => parseFlags(['-id', 'x', 'restart'])).toThrow(/unknown action/);
    expect(() => parseFlags(['-namespace', 'n', '-id', 'x'])).toThrow('missing action: start or delete');
  });
});

describe('grouping', () => {
  it('puts a CRI pod container in its sandbox’s shim, everything else in its own', () => {
    const pod = { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'podA' };
    expect(containerKind(pod)).toBe('pod-container');
    expect(sandboxIdOf('c1', pod)).toBe('podA');
    expect(sandboxIdOf('podA', { 'io.kubernetes.cri.container-type': 'sandbox', 'io.kubernetes.cri.sandbox-id': 'podA' })).toBe('podA');
    expect(sandboxIdOf('t1', undefined)).toBe('t1');
  });

  it('derives the socket from containerd address, namespace and group, as containerd’s shims do', () => {
    const a = socketPath('/run/containerd/containerd.sock', 'k8s.io', 'podA');
    expect(a).toMatch(/^\/run\/containerd\/s\/[0-9a-f]{64}$/);
    expect(socketPath('/run/containerd/containerd.sock', 'k8s.io', 'podA')).toBe(a);
    expect(socketPath('/run/containerd/containerd.sock', 'default', 'podA')).not.toBe(a);
  });
});

describe('VM sizing', () => {
  it('adds the container limits to the defaults', () => {
    expect(sizeVm({ cpus: 1, memoryMiB: 256 }, undefined)).toEqual({ cpus: 1, memoryMiB: 256 });
    expect(sizeVm({ cpus: 1, memoryMiB: 256 }, { memory: { limit: 128 * 1024 * 1024 }, cpu: { quota: 150_000, period: 100_000 } })).toEqual({ cpus: 3, memoryMiB: 384 });
    expect(sizeVm({ cpus: 1, memoryMiB: 256 }, { memory: { limit: 1 } }).memoryMiB).toBe(258);
  });

  it("sizes a pod's VM from the sandbox annotations containerd's CRI sets, and names a bad one", () => {
    const pod = podSandboxResources({
      'io.kubernetes.cri.sandbox-cpu-quota': '150000',
      'io.kubernetes.cri.sandbox-cpu-period': '100000',
      'io.kubernetes.cri.sandbox-memory': String(512 * 1024 * 1024),
      'io.kubernetes.cri.sandbox-cpu-shares': '1536',
    });
    expect(sizeVm({ cpus: 1, memoryMiB: 256 }, pod)).toEqual({ cpus: 3, memoryMiB: 768 });
    expect(podSandboxResources({})).toEqual({});
    expect(() => podSandboxResources({ 'io.kubernetes.cri.sandbox-memory': '1Gi' })).toThrow(SizeAnnotationError);
    expect(() => podSandboxResources({ 'io.kubernetes.cri.sandbox-memory': '-5' })).toThrow(/io\.kubernetes\.cri\.sandbox-memory: "-5"/);
  });
});

describe('logging binary URIs', () => {
  it('turns the query into arguments as containerd does: each key, then its first value', () => {
    expect(loggerCommand(new URL('binary:///usr/local/bin/my%20logger?--tag=web&level=info&tag=2'))).toEqual({
      path: '/usr/local/bin/my logger',
      args: ['--tag', 'web', 'level', 'info', 'tag', '2'],
    });
    expect(loggerCommand(new URL('binary:///opt/logger?/var/log/x'))).toEqual({ path: '/opt/logger', args: ['/var/log/x', ''] });
  });

  it('tells stdio kinds apart and names what it does not support', () => {
    expect(stdioTarget('binary:///opt/logger').kind).toBe('binary');
    expect(stdioTarget('/run/containerd/fifo/1/x-stdout')).toEqual({ kind: 'fifo', path: '/run/containerd/fifo/1/x-stdout' });
    expect(() => stdioTarget('tcp://host:1')).toThrow('only FIFOs, file:// and binary:// are supported');
  });
});
