// What a sandbox template is keyed by: the shape of the VM (the description
// without what is the sandbox's own: its name, sockets, console, vsock CID,
// share and NICs, which are added after the restore) and the identity of
// every file that makes the guest (QEMU, firmware, kernel, the rootfs image
// that holds the agent). Any change to either gives another key, so a stale
// template is never used.
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { VmDescription } from '../hypervisor/vm-description.js';

/** Bump when what a template holds changes in a way the description does not show. */
export const TEMPLATE_FORMAT = 1;

export interface FileIdentity {
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

export interface TemplateInputs {
  format: number;
  shape: Record<string, unknown>;
  files: Record<string, FileIdentity>;
}

/** The part of a description that a template fixes. */
export function templateShape(d: VmDescription): Record<string, unknown> {
  const {
    name: _name,
    sharedFs: _sharedFs,
    networks: _networks,
    ownNetworkNamespace: _ownNetns,
    dieWithOwner: _dieWithOwner,
    consoleLogPath: _console,
    qmpSocketPath: _qmp,
    pidFilePath: _pid,
    ramFile: _ram,
    incoming: _incoming,
    lateDevices: _late,
    agentChannel,
    ...shape
  } = d;
  return { ...shape, agentChannel: agentChannel.kind === 'serial' ? { kind: 'serial', portName: agentChannel.portName } : { kind: 'vsock' } };
}

export async function fileIdentity(path: string): Promise<FileIdentity> {
  const s = await stat(path);
  return { path, size: s.size, mtimeMs: s.mtimeMs, ino: s.ino };
}

export async function templateInputs(d: VmDescription): Promise<TemplateInputs> {
  const files: Record<string, FileIdentity> = {
    qemu: await fileIdentity(d.qemuBinary),
    kernel: await fileIdentity(d.kernel.path),
    image: await fileIdentity(d.rootfsImage.path),
  };
  if (d.firmware) files['firmware'] = await fileIdentity(d.firmware);
  return { format: TEMPLATE_FORMAT, shape: templateShape(d), files };
}

/** Key order does not matter: objects are hashed with sorted keys. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, canonical(v)]),
    );
  return value;
}

export function templateKey(inputs: TemplateInputs): string {
  return createHash('sha256').update(JSON.stringify(canonical(inputs))).digest('hex').slice(0, 16);
}
