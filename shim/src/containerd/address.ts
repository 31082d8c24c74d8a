// Where a shim listens: containerd's convention, so that the shims of one
// pod find each other: unix:///run/containerd/s/<sha256(address/namespace/group)>.
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

export const SOCKET_ROOT = '/run/containerd/s';

export function socketPath(containerdAddress: string, namespace: string, groupId: string): string {
  return join(SOCKET_ROOT, createHash('sha256').update(join(containerdAddress, namespace, groupId)).digest('hex'));
}

export const toAddress = (path: string) => `unix://${path}`;
export const fromAddress = (address: string) => address.replace(/^unix:\/\//, '');

/**
 * Creates the folder shims listen in when it is missing (a fresh host, after a reboot: it is on a
 * tmpfs, and only shims create it), for root alone, as containerd's shims do. An existing folder is
 * left as it is: it is shared with those shims.
 */
export async function ensureSocketRoot(): Promise<void> {
  await mkdir(SOCKET_ROOT, { recursive: true, mode: 0o700 });
}
