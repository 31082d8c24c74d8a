// A job's network: none (loopback only) or nat, outbound connections through
// user-mode NAT in the VMM's own network namespace, which the guest's NIC is
// mirrored to at the job's start.
import { access, constants, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import { USER_NAT_BINARY, USER_NAT_DNS, UserNat } from '../network/user-nat.js';
import type { SandboxSettings } from '../sandbox/settings.js';
import type { NetworkMode } from './options.js';

/** The guest NIC's name; slirp4netns names the interface it makes after it. */
const JOB_INTERFACE = 'eth0';

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

/**
 * The job's /etc/resolv.conf, written in the job's folder and bind-mounted over the image's by
 * the guest's runtime, which resolves the target inside the container's root: an image whose
 * /etc is a symlink cannot lead the write onto the host.
 */
export async function writeResolvConf(jobDir: string): Promise<string> {
  const file = join(jobDir, 'resolv.conf');
  await writeFile(file, `nameserver ${USER_NAT_DNS}\n`, { flag: 'wx', mode: 0o644 });
  return file;
}

/** Starts the NAT in the namespace of the VMM; the sandbox mirrors its interface at the job's start. */
export function startJobNat(vmmPid: number, log: Logger): Promise<UserNat> {
  return UserNat.start(vmmPid, JOB_INTERFACE, log);
}
