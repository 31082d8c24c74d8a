// Where a shim listens: containerd's convention, so that the shims of one
// pod find each other: unix:///run/containerd/s/<sha256(address/namespace/group)>.
import { createHash } from 'node:crypto';
import { join } from 'node:path';

export const SOCKET_ROOT = '/run/containerd/s';

export function socketPath(containerdAddress: string, namespace: string, groupId: string): string {
  return join(SOCKET_ROOT, createHash('sha256').update(join(containerdAddress, namespace, groupId)).digest('hex'));
}

export const toAddress = (path: string) => `unix://${path}`;
export const fromAddress = (address: string) => address.replace(/^unix:\/\//, '');
