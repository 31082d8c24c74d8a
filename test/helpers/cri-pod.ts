// A kubelet-like pod for end-to-end tests through containerd's CRI plugin.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CriClient, type ContainerConfig, type PodSandboxConfig } from '../../shim/src/cri/client.js';
import { BUSYBOX_IMAGE, BUSYBOX_IMAGE_TAR, PAUSE_IMAGE_TAR, PrivateContainerd } from './containerd.js';
import { eventually } from './host-state.js';

export const CGROUP_PARENT = '/kata-ts-cri-test';
let seq = 0;

/** A kubelet-like pod: its own log folder, volumes on the host, and the pod's containers. */
export class PodFixture {
  readonly uid = `uid-${process.pid}-${++seq}`;
  readonly dir: string;
  readonly config: PodSandboxConfig;
  id = '';

  constructor(
    readonly cri: CriClient,
    readonly handler: string,
    extra: Partial<PodSandboxConfig> = {},
    shareProcesses = false,
  ) {
    this.dir = mkdtempSync('/tmp/kcri-pod-');
    mkdirSync(join(this.dir, 'logs'));
    this.config = {
      metadata: { name: `pod-${seq}`, uid: this.uid, namespace: 'e2e', attempt: 0 },
      hostname: `pod-${seq}-host`,
      logDirectory: join(this.dir, 'logs'),
      dnsConfig: { servers: ['10.0.0.10'], searches: ['e2e.svc.cluster.local'], options: ['ndots:5'] },
      linux: {
        cgroupParent: CGROUP_PARENT,
        sysctls: { 'kernel.shm_rmid_forced': '1' },
        securityContext: { namespaceOptions: { network: 'POD', pid: shareProcesses ? 'POD' : 'CONTAINER', ipc: 'POD' } },
      },
      ...extra,
    };
  }

  async run(): Promise<this> {
    this.id = await this.cri.runPodSandbox(this.config, this.handler);
    return this;
  }

  /** Creates and starts a busybox container in the pod. */
  async container(name: string, command: string[], extra: Partial<ContainerConfig> = {}): Promise<string> {
    const pid = (this.config.linux as { securityContext: { namespaceOptions: { pid: string } } }).securityContext.namespaceOptions.pid;
    const config: ContainerConfig = {
      metadata: { name, attempt: 0 },
      image: { image: BUSYBOX_IMAGE },
      command,
      logPath: `${name}.log`,
      linux: { securityContext: { namespaceOptions: { network: 'POD', pid, ipc: 'POD' } } },
      ...extra,
    };
    const id = await this.cri.createContainer(this.id, config, this.config);
    await this.cri.startContainer(id);
    return id;
  }

  async sh(containerId: string, script: string): Promise<{ out: string; err: string; code: number }> {
    const r = await this.cri.execSync(containerId, ['sh', '-c', script], 60);
    return { out: r.stdout.toString(), err: r.stderr.toString(), code: r.exitCode };
  }

  /** The pod IP CRI reports (CNI's address on the pod's eth0). */
  async ip(): Promise<string> {
    const { status } = await this.cri.podSandboxStatus(this.id);
    return (status as { network: { ip: string } }).network.ip;
  }

  /** The host network namespace containerd made for the pod, from the sandbox's runtime spec. */
  async netnsPath(): Promise<string> {
    const { info } = await this.cri.podSandboxStatus(this.id, true);
    const spec = (JSON.parse(info.info ?? '{}') as { runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } } }).runtimeSpec;
    const path = spec?.linux?.namespaces?.find((ns) => ns.type === 'network')?.path;
    if (!path) throw new Error(`pod ${this.id} has no network namespace path`);
    return path;
  }

  async remove(): Promise<void> {
    if (this.id) {
      await this.cri.stopPodSandbox(this.id);
      await this.cri.removePodSandbox(this.id);
    }
    execFileSync('sh', ['-c', `grep " ${this.dir}" /proc/self/mountinfo | cut -d" " -f5 | sort -r | xargs -r -n1 umount -l`]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs the pod, hands it to fn, and removes it and its folder whatever happened. */
export async function withPod(pod: PodFixture, fn: (pod: PodFixture) => Promise<void>): Promise<void> {
  try {
    await fn(await pod.run());
  } finally {
    await pod.remove();
  }
}

/** The CRI log format: `<RFC3339Nano> <stream> <P|F> <text>`, one line each. */
export function parseCriLog(text: string): { stream: string; text: string }[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [, stream, , ...rest] = line.split(' ');
      return { stream: stream!, text: rest.join(' ') };
    });
}

/** runc's cgroupfs parents outlive their pods (kata-ts makes none on the host). */
export function removeCgroupParent(): void {
  execFileSync('sh', ['-c', `for d in /sys/fs/cgroup/*${CGROUP_PARENT} /sys/fs/cgroup/*/*${CGROUP_PARENT}; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + ; done; true`]);
}

/** A private containerd with the CRI plugin, the pause and busybox images in k8s.io, and a CRI client that it answers. */
export async function startCriContainerd(): Promise<{ ctrd: PrivateContainerd; cri: CriClient; stop: () => Promise<void> }> {
  const ctrd = await PrivateContainerd.start({ cri: true, namespace: 'k8s.io' });
  const cri = CriClient.connect(ctrd.address);
  const stop = async () => {
    cri.close();
    await ctrd.stop();
    removeCgroupParent();
  };
  try {
    await ctrd.importImage(PAUSE_IMAGE_TAR);
    await ctrd.importImage(BUSYBOX_IMAGE_TAR);
    await eventually(async () => (await cri.version().catch(() => undefined)) !== undefined, 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return { ctrd, cri, stop };
}
