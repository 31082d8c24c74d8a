// The versions of everything a sandbox runs, each with where it was read:
// kata-ts and Node here, QEMU, virtiofsd, containerd and slirp4netns from
// their --version, the guest kernel from its build config, the guest's crun
// and Node from the rootfs image's build record.
import { SHIM_VERSION } from '../containerd/version.js';
import { USER_NAT_BINARY } from '../network/user-nat.js';
import type { SandboxSettings } from '../sandbox/settings.js';
import { containerdVersion, probeCommand, versionAfterWord } from './host-facts.js';
import { inspectImage, inspectKernel } from './image-record.js';

export interface VersionEntry {
  name: string;
  /** null: not found, or not recorded. */
  version: string | null;
  from: string;
}

export async function gatherVersions(settings: Pick<SandboxSettings, 'qemuBinary' | 'virtiofsdBinary' | 'kernelPath' | 'imagePath'>): Promise<VersionEntry[]> {
  const command = async (name: string, binary: string, parse: (out: string) => string | undefined): Promise<VersionEntry> => {
    const c = await probeCommand(binary, ['--version'], parse);
    return { name, version: c.version ?? null, from: c.state === 'ok' ? `${binary} --version` : `${binary}: ${c.error}` };
  };
  const [qemu, virtiofsd, containerd, slirp, kernel, rootfs] = await Promise.all([
    command('QEMU', settings.qemuBinary, versionAfterWord),
    command('virtiofsd', settings.virtiofsdBinary, versionAfterWord),
    command('containerd', 'containerd', containerdVersion),
    command('slirp4netns', USER_NAT_BINARY, versionAfterWord),
    inspectKernel(settings.kernelPath, undefined, false),
    inspectImage(settings.imagePath, false),
  ]);
  const recorded = (field: string) => rootfs.record?.fields[field]?.replace(/^crun version /, '') ?? null;
  const record = rootfs.record ? `${settings.imagePath}.key` : `no ${settings.imagePath}.key (the rootfs build writes it)`;
  return [
    { name: 'kata-ts', version: SHIM_VERSION.replace(/^kata-ts /, ''), from: 'this command' },
    { name: 'node', version: process.version, from: process.execPath },
    qemu,
    virtiofsd,
    containerd,
    slirp,
    { name: 'guest kernel', version: kernel.release ?? null, from: `${settings.kernelPath}.config` },
    { name: 'guest crun', version: recorded('crun'), from: record },
    { name: 'guest node', version: recorded('node'), from: record },
  ];
}
