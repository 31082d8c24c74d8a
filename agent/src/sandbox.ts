// The agent's view of its sandbox: the shared filesystem and the containers.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Logger } from '../../common/log.js';
import type { NativeAddon } from '../../native/native.js';
import { Container } from './container.js';
import { DebugConsoles, type DebugConsoleRequest } from './debug-console.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from './errors.js';
import { parseSpec, POD_NAMESPACE_FILES, toGuestSpec } from './guest-spec.js';
import { OomWatcher } from './oom-watcher.js';
import { PodStorage } from './pod-storage.js';
import type { MountSource } from '../../proto/gen/agent.js';

export interface SandboxPaths {
  crunBinary: string;
  crunRoot: string;
  /** Where the virtio-fs share is mounted. */
  sharedMount: string;
  /** Per-container bundles. */
  containersDir: string;
  /** cgroup v2 mount and the parent of every container's cgroup. */
  cgroupRoot: string;
  cgroupParent: string;
  /** The pod's tmpfs mounts (its /dev/shm, memory-backed volumes). */
  podTmpfsDir: string;
}

/** How a container stands in its pod, as the host says. */
export interface PodPlacement {
  /** The pod's sandbox container: its new namespaces become the pod's. */
  podSandbox: boolean;
  /** Namespace types joined from the pod's sandbox container. */
  podNamespaces: readonly string[];
  mountSources: readonly MountSource[];
}

/** How long output may still come after a process exits, unless the host says otherwise. */
export const DEFAULT_OUTPUT_FLUSH_MS = 2000;

const STANDALONE: PodPlacement = { podSandbox: false, podNamespaces: [], mountSources: [] };

export const DEFAULT_PATHS: SandboxPaths = {
  crunBinary: '/usr/bin/crun',
  crunRoot: '/run/crun',
  sharedMount: '/run/kata-ts/shared',
  containersDir: '/run/kata-ts/containers',
  cgroupRoot: '/sys/fs/cgroup',
  cgroupParent: '/kata-ts',
  podTmpfsDir: '/run/kata-ts/pod/tmpfs',
};

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function checkId(kind: string, id: string): void {
  if (!ID_PATTERN.test(id)) throw invalidArgument(`${kind} ${JSON.stringify(id)} is not a valid id`);
}

export class Sandbox {
  #id: string | undefined;
  readonly #containers = new Map<string, Container>();
  /** Ids whose create is under way, so a concurrent create of the same id fails. */
  readonly #creating = new Set<string>();
  #destroying = false;
  #outputFlushMs = DEFAULT_OUTPUT_FLUSH_MS;
  /** The pod's sandbox container, whose main process holds the pod's namespaces. */
  #podSandboxId: string | undefined;
  readonly oom: OomWatcher;
  readonly debugConsoles: DebugConsoles;
  readonly #storage: PodStorage;

  constructor(
    private readonly paths: SandboxPaths,
    private readonly native: NativeAddon,
    private readonly log: Logger,
  ) {
    this.oom = new OomWatcher(log);
    this.debugConsoles = new DebugConsoles(native, log.child({ debugConsole: true }), () => this.#outputFlushMs);
    this.#storage = new PodStorage(paths.sharedMount, paths.podTmpfsDir, native, log);
  }

  /** The cgroup v2 folder that holds every container's cgroup. */
  get containersCgroup(): string {
    return join(this.paths.cgroupRoot, this.paths.cgroupParent);
  }

  async create(id: string, hostname: string, sharedFsTag: string, outputFlushMs = 0, debugConsoleEnabled = false): Promise<string> {
    if (this.#id !== undefined) throw alreadyExists(`sandbox ${this.#id}`);
    checkId('sandbox id', id);
    await mkdir(this.paths.sharedMount, { recursive: true });
    if (sharedFsTag) {
      try {
        this.native.mount(sharedFsTag, this.paths.sharedMount, 'virtiofs', 0, '');
      } catch (err) {
        throw failedPrecondition(`cannot mount virtio-fs share ${sharedFsTag}: ${(err as Error).message}`);
      }
    }
    if (hostname) await writeFile('/proc/sys/kernel/hostname', hostname);
    await mkdir(this.paths.containersDir, { recursive: true });
    this.#id = id;
    if (outputFlushMs > 0) this.#outputFlushMs = outputFlushMs;
    if (debugConsoleEnabled) this.debugConsoles.enable();
    this.log.info('sandbox created', { sandbox: id, shared: sharedFsTag || 'none', debugConsole: debugConsoleEnabled });
    return this.paths.sharedMount;
  }

  #requireSandbox(): void {
    if (this.#id === undefined) throw failedPrecondition('no sandbox: call CreateSandbox first');
    if (this.#destroying) throw failedPrecondition('the sandbox is being destroyed');
  }

  /** A process by its reference: a container's, or a debug console's (container id ""). */
  process(containerId: string, execId: string) {
    return containerId === '' ? this.debugConsoles.process(execId) : this.container(containerId).process(execId);
  }

  async signal(containerId: string, execId: string, signal: number, all: boolean): Promise<void> {
    if (containerId === '') this.debugConsoles.signal(execId, signal, all);
    else await this.container(containerId).signal(execId, signal, all);
  }

  async startDebugConsole(req: DebugConsoleRequest): Promise<number> {
    this.#requireSandbox();
    return this.debugConsoles.start(req, checkId);
  }

  container(id: string): Container {
    const c = this.#containers.get(id);
    if (!c) throw notFound(`container ${id}`);
    return c;
  }

  async createContainer(id: string, specJson: string, rootfsPath: string, placement: PodPlacement = STANDALONE): Promise<void> {
    this.#requireSandbox();
    checkId('container id', id);
    if (this.#containers.has(id) || this.#creating.has(id)) throw alreadyExists(`container ${id}`);
    const normalized = posix.normalize(rootfsPath);
    if (!rootfsPath || normalized.startsWith('..') || posix.isAbsolute(normalized))
      throw invalidArgument(`rootfs_path ${JSON.stringify(rootfsPath)} must be a relative path inside the shared filesystem`);
    if (placement.podSandbox && this.#podSandboxId !== undefined) throw alreadyExists(`pod sandbox container ${this.#podSandboxId}`);
    this.#creating.add(id);
    try {
      const host = parseSpec(specJson);
      const { spec, adjustments } = toGuestSpec(host, {
        containerId: id,
        rootfsPath: join(this.paths.sharedMount, normalized),
        cgroupParent: this.paths.cgroupParent,
        bindSources: await this.#storage.resolve(host.mounts ?? [], placement.mountSources),
        podNamespacePaths: this.#podNamespacePaths(placement.podNamespaces),
      });
      for (const a of adjustments) this.log.info(a, { container: id });
      const container = await Container.create(
        id,
        spec,
        {
          crun: { binary: this.paths.crunBinary, root: this.paths.crunRoot },
          bundleDir: join(this.paths.containersDir, id),
          cgroupDir: join(this.paths.cgroupRoot, this.paths.cgroupParent, id),
        },
        this.native,
        this.log.child({ container: id }),
        this.#outputFlushMs,
      );
      this.#containers.set(id, container);
      if (placement.podSandbox) this.#podSandboxId = id;
    } finally {
      this.#creating.delete(id);
    }
    this.log.info('container created', { container: id, podSandbox: placement.podSandbox, joins: placement.podNamespaces });
  }

  /** The guest paths of the pod's namespaces a container joins: those of its pause process. */
  #podNamespacePaths(types: readonly string[]): Record<string, string> {
    if (types.length === 0) return {};
    const holder = this.#podSandboxId === undefined ? undefined : this.#containers.get(this.#podSandboxId);
    if (!holder || holder.main.state !== 'running' || holder.main.pid <= 0)
      throw failedPrecondition(`the pod's sandbox container is not running, so its ${types.join(', ')} namespaces cannot be joined`);
    const paths: Record<string, string> = {};
    for (const type of types) {
      const file = POD_NAMESPACE_FILES[type];
      if (!file) throw invalidArgument(`namespace ${JSON.stringify(type)} cannot be joined from the pod (only ${Object.keys(POD_NAMESPACE_FILES).join(', ')})`);
      paths[type] = `/proc/${holder.main.pid}/ns/${file}`;
    }
    return paths;
  }

  /** Starts the container's main process and watches its cgroup for OOM kills. */
  async startContainer(id: string): Promise<number> {
    const pid = await this.container(id).start();
    await this.oom.add(id, join(this.paths.cgroupRoot, this.paths.cgroupParent, id));
    return pid;
  }

  async removeContainer(id: string, force: boolean): Promise<void> {
    const container = this.container(id);
    this.oom.remove(id);
    await container.remove(force);
    this.#containers.delete(id);
    if (this.#podSandboxId === id) this.#podSandboxId = undefined;
    this.log.info('container removed', { container: id });
  }

  /** Stops every container (SIGTERM, then SIGKILL after the grace period), flushes what they wrote and unmounts the share. */
  async destroy(graceMs: number): Promise<void> {
    this.#destroying = true;
    this.debugConsoles.killAll();
    await Promise.all([...this.#containers.values()].map((c) => c.kill(graceMs)));
    await Promise.all([...this.#containers.keys()].map((id) => this.removeContainer(id, true).catch(() => undefined)));
    // What containers wrote through the share is on the host before the host may quit the VM.
    this.native.sync();
    this.#storage.release();
    try {
      this.native.umount(this.paths.sharedMount, 2 /* MNT_DETACH */);
    } catch {
      // not mounted
    }
    this.log.info('sandbox destroyed', { sandbox: this.#id });
  }
}
