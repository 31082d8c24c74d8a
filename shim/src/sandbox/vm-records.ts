// Finds the VM description a running sandbox was started with, in its VM
// folder under the run root. Folders of long names are hashed
// (sandbox-dirs.ts), so a sandbox is known by the name inside its record, not
// by its folder's name.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VM_DESCRIPTION_FILE } from '../hypervisor/vm.js';
import type { VmDescription } from '../hypervisor/vm-description.js';

export class VmRecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VmRecordError';
  }
}

export interface VmRecord {
  /** The sandbox's name on this host: `<id>@<namespace>` for a shim's, the bare id for a job's. */
  name: string;
  vmDir: string;
  description: VmDescription;
}

function asDescription(value: unknown, path: string): VmDescription {
  const d = value as Partial<VmDescription> | null;
  if (typeof d?.name !== 'string' || typeof d.qemuBinary !== 'string' || typeof d.kernel?.path !== 'string' || typeof d.agentChannel?.kind !== 'string')
    throw new VmRecordError(`${path} is not a VM description`);
  return d as VmDescription;
}

export interface VmRecords {
  records: VmRecord[];
  /** VM folders without a record: a VM being set up, or one started by a kata-ts that kept none. */
  unrecorded: string[];
}

export async function listVmRecords(runRoot: string): Promise<VmRecords> {
  const root = join(runRoot, 'vm');
  const dirs = await readdir(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const found: VmRecords = { records: [], unrecorded: [] };
  for (const dir of dirs.sort()) {
    const path = join(root, dir, VM_DESCRIPTION_FILE);
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) {
      found.unrecorded.push(dir);
      continue;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new VmRecordError(`${path}: ${(err as Error).message}`);
    }
    const description = asDescription(parsed, path);
    found.records.push({ name: description.name, vmDir: join(root, dir), description });
  }
  return found;
}

/** The id part of a name on this host (`<id>@<namespace>`); a job's name is its id. */
const idOf = (name: string) => name.split('@')[0]!;

/**
 * The record of `wanted`: a sandbox's full name (`id@namespace`, a job's `job-…`), or its id
 * when only one namespace has a sandbox of that id.
 */
export function pickVmRecord({ records, unrecorded }: VmRecords, wanted: string, runRoot: string): VmRecord {
  const exact = records.find((r) => r.name === wanted);
  if (exact) return exact;
  const byId = records.filter((r) => idOf(r.name) === wanted);
  if (byId.length === 1) return byId[0]!;
  if (byId.length > 1) throw new VmRecordError(`sandbox ${wanted} is in more than one namespace (${byId.map((r) => r.name).join(', ')}); name it as id@namespace`);
  const where = join(runRoot, 'vm');
  if (unrecorded.some((dir) => dir === wanted || idOf(dir) === wanted))
    throw new VmRecordError(`sandbox ${wanted} has a folder under ${where} but no ${VM_DESCRIPTION_FILE} (still starting, or started by an older kata-ts)`);
  const known = records.map((r) => r.name);
  throw new VmRecordError(`no sandbox ${wanted} under ${where} (${known.length ? `there are: ${known.join(', ')}` : 'none is running'})`);
}

export async function findVmRecord(runRoot: string, wanted: string): Promise<VmRecord> {
  return pickVmRecord(await listVmRecords(runRoot), wanted, runRoot);
}
