// Whether a job's network mode can work on this host, asked before any VM
// boots. The nat mode itself is the sandbox's user-mode NAT (settings.userNat).
import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { USER_NAT_BINARY } from '../network/user-nat.js';
import type { SandboxSettings } from '../sandbox/settings.js';
import type { NetworkMode } from './options.js';

async function onPath(binary: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    if (await access(join(dir, binary), constants.X_OK).then(() => true, () => false)) return true;
  }
  return false;
}

/** Why the mode cannot work on this host, before any VM boots; undefined when it can. */
export async function networkModeProblem(mode: NetworkMode, settings: SandboxSettings): Promise<string | undefined> {
  if (mode === 'none') return undefined;
  if (settings.networkModel === 'none') return '--network nat needs runtime.internetworking_model = "tcfilter" in the configuration (it is "none")';
  if (!(await onPath(USER_NAT_BINARY))) return `--network nat needs ${USER_NAT_BINARY} on PATH (Debian: apt install ${USER_NAT_BINARY})`;
  return undefined;
}
