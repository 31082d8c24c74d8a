// Whether a job's network mode can work on this host, asked before any VM
// boots. The nat mode itself is the sandbox's user-mode NAT (settings.userNat).
import { findExecutable } from '../../../common/find-executable.js';
import { USER_NAT_BINARY } from '../network/user-nat.js';
import type { SandboxSettings } from '../sandbox/settings.js';
import type { NetworkMode } from './options.js';

/** Why the mode cannot work on this host, before any VM boots; undefined when it can. */
export function networkModeProblem(mode: NetworkMode, settings: SandboxSettings): string | undefined {
  if (mode === 'none') return undefined;
  if (settings.networkModel === 'none') return '--network nat needs runtime.internetworking_model = "tcfilter" in the configuration (it is "none")';
  if (!findExecutable(USER_NAT_BINARY)) return `--network nat needs ${USER_NAT_BINARY} on PATH (Debian: apt install ${USER_NAT_BINARY})`;
  return undefined;
}
