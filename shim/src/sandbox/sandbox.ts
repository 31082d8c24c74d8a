// A sandbox seen from the host: one VM with its agent, holding containers.
// Knows nothing of containerd; the shim and the demo build on it.
import { readdir, stat, mkdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type net from 'node:net';
import type { Logger } from '../../../common/log.js';
import { loadNative, type NativeAddon } from '../../../native/native.js';
import { chooseAccel, chooseChannel, probeHost, type HostProbe } from '../hypervisor/accel.js';
import type { LaunchVmm, Vmm } from '../hypervisor/vmm.js';
import type { AgentClient } from './agent-client.js';
import { DebugConsoleDisabledError, SpecError } from './errors.js';
import type { ContainerStats, ProcessInfo } from '../../../proto/gen/agent.js';
import { bindMount, inspectSource, makeSharedMountPoint, shareSource, unmountAndRemove, unshareSource } from './host-mounts.js';
import { planMounts, podNamespacesToJoin, type PodRole, type SpecLike } from './pod-placement.js';
import { ProcessHandle } from './process-handle.js';
import { sandboxDirs } from './sandbox-dirs.js';
import type { SandboxSettings } from './settings.js';
import { rejectedOnAbort } from '../../../common/settle.js';
import { LivenessWatch } from './liveness.js';
import { PodNetwork, useVhostNet, type PreparedNic } from '../network/pod-network.js';
import { tapName } from '../network/tc-mirror.js';
import { resolvConfMount, USER_NAT_INTERFACE, USER_NAT_RESOLV_CONF, UserNat } from '../network/user-nat.js';
import { planVm, type PlannedNetwork } from './vm-plan.js';
import { bootVm, type BootTimeline } from './vm-boot.js';
import { localMac, randomGuestCid } from './vm-random.js';

export { guestCmdline, SERIAL_PORT_NAME, SHARED_FS_TAG } from './vm-plan.js';
export { AGENT_VSOCK_PORT, type BootTimeline } from './vm-boot.js';


export interface ContainerOptions {
  /** The container's OCI runtime spec (its root.path is replaced). */
  spec: Record<string, unknown>;
  /** Host directory holding the container's root filesystem. */
  rootfs: string;
  /** Its place in a pod; standalone when not given. */
  role?: PodRole;
}

export interface StartOptions {
  /** Unique on this host: names QEMU and the run directories (default: the id). */
  name?: string;
  /** What the host offers (KVM, vhost-vsock); probed when not given. */
  probe?: HostProbe;
  /** Called once QEMU runs, while the guest boots. */
  onLaunched?: () => void;
  /** What starts the VM; QEMU unless given. */
  launchVmm?: LaunchVmm;
  /** The host network namespace CNI filled for this sandbox: its interfaces are carried into the VM. */
  netnsPath?: string;
  /**
   * CNI may fill a namespace only after create (ctr run --cni configures the one of the task's
   * pid): the VMM gets a namespace of its own with one NIC ready, carried over at the first start.
   */
  lateNetwork?: boolean;
  /** Ends the boot at once (the VM stopped, nothing left); the boot then fails with the signal's reason. */
  signal?: AbortSignal;
  /** QEMU and virtiofsd die with this process, even when it is SIGKILLed (a job's runner). */
  dieWithOwner?: boolean;
}

export class Sandbox {
  readonly #containers = new Set<string>();
  #stopped: Promise<void> | undefined;
  /** The container whose network namespace holds the pod's interfaces (its pause, or a lone container). */
  #networkHolder: string | undefined;
  #network: PodNetwork | undefined;
  /** The NIC the VM got for a network that comes after create; taken at the holder's start. */
  #preparedNic: PreparedNic | undefined;
  /** User-mode NAT for a task nobody gave a network (settings.userNat). */
  #nat: UserNat | undefined;
  #liveness: LivenessWatch | undefined;

  private constructor(
    readonly id: string,
    readonly vm: Vmm,
    readonly agent: AgentClient,
    readonly timeline: BootTimeline,
    private readonly sharedDir: string,
    /** The VM's run folder: its sockets, pid files, console log and description. */
    readonly vmDir: string,
    private readonly settings: SandboxSettings,
    private readonly native: NativeAddon,
    private readonly proxy: net.Server | undefined,
    network: PodNetwork | undefined | PreparedNic,
    private readonly log: Logger,
  ) {
    if (network instanceof PodNetwork) this.#network = network;
    else this.#preparedNic = network;
    if (settings.hungTimeoutMs > 0) this.#watchLiveness(settings.hungTimeoutMs);
  }

  /** A guest that stops answering while its VMM runs is ended as a dead one: its tasks exit, and all can be removed. */
  #watchLiveness(silentMs: number): void {
    this.#liveness = new LivenessWatch({
      check: (timeoutMs) => this.agent.call('check', {}, timeoutMs),
      silentMs,
      onSilent: (silentForMs) => {
        this.log.error('the guest has not answered for too long; killing its VM', { silentForMs, hungTimeoutMs: silentMs, vmPid: this.vm.pid });
        // SIGKILL ends even a stopped QEMU; its exit then fails every call, as any VM death does.
        try {
          if (this.vm.pid !== undefined) process.kill(this.vm.pid, 'SIGKILL');
          else void this.vm.stop({ gracefulMs: 0 });
        } catch {
          // It exited meanwhile.
        }
      },
    });
    this.#liveness.start();
    void this.vm.exited.then(() => this.#liveness?.stop());
  }

  /** Where this sandbox keeps its files (the cleanup after a dead shim looks there). */
  get runRoot(): string {
    return this.settings.runRoot;
  }

  /** How long after a process's exit its output may still come (the agent cuts it then). */
  get outputFlushMs(): number {
    return this.settings.outputFlushMs;
  }

  /** What its configuration says of a container that asks for the host's network. */
  get hostNetwork(): SandboxSettings['hostNetwork'] {
    return this.settings.hostNetwork;
  }

  /** Boots the VM, waits for the agent and creates the sandbox in the guest. Leaves nothing behind on failure. */
  static async start(id: string, settings: SandboxSettings, log: Logger, opts: StartOptions = {}): Promise<Sandbox> {
    const probe = opts.probe ?? probeHost();
    const name = opts.name ?? id;
    const accel = chooseAccel(settings.accel, probe);
    const channel = chooseChannel(settings.agentChannel, probe);
    log.info('sandbox accel', { sandbox: id, accel: accel.value, reason: accel.reason });
    if (accel.value === 'tcg') log.warn('sandbox runs under TCG software emulation', { sandbox: id, reason: accel.reason });
    log.info('sandbox agent channel', { sandbox: id, channel: channel.value, reason: channel.reason });

    opts.signal?.throwIfAborted();
    const native = loadNative();
    const { vmDir, sharedDir } = sandboxDirs(settings.runRoot, name);
    const image = await stat(settings.imagePath);

    let network: PodNetwork | undefined;
    let planned: PlannedNetwork | undefined;
    if (opts.netnsPath && settings.networkModel !== 'none') {
      network = await PodNetwork.attach(opts.netnsPath, { allowVhost: !settings.disableVhostNet }, native, log.child({ sandbox: id }));
      planned = { kind: 'passed-taps', taps: network.nics.map((n) => ({ name: n.tap, mac: n.mac, mtu: n.mtu })), vhost: network.vhost };
    }
    let preparedNic: PreparedNic | undefined;
    if (opts.lateNetwork && !opts.netnsPath && settings.networkModel !== 'none') {
      // A locally administered MAC until the guest NIC takes the CNI interface's.
      preparedNic = { tap: tapName(0), deviceMac: localMac() };
      planned = { kind: 'own-namespace', tap: preparedNic.tap, mac: preparedNic.deviceMac, vhost: useVhostNet(!settings.disableVhostNet) };
    }
    const description = planVm({
      name,
      settings,
      accel: accel.value,
      channel: channel.value,
      guestCid: randomGuestCid(),
      imageSizeBytes: image.size,
      ...(planned ? { network: planned } : {}),
      ...(opts.dieWithOwner ? { dieWithOwner: true } : {}),
    });
    log.info('guest kernel command line', { sandbox: id, cmdline: description.kernel.cmdline.join(' ') });
    try {
      await makeSharedMountPoint(native, sharedDir);
    } catch (err) {
      await network?.detach();
      throw err;
    }
    const aborted = rejectedOnAbort(opts.signal);
    try {
      const booted = await bootVm({
        id,
        description,
        settings,
        native,
        sharedDir,
        vmDir,
        tapFds: network?.tapFds ?? [],
        ...(opts.launchVmm ? { launchVmm: opts.launchVmm } : {}),
        ...(opts.onLaunched ? { onLaunched: opts.onLaunched } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        aborted: aborted.promise,
        ...(opts.dieWithOwner ? { dieWithOwner: true } : {}),
        log: log.child({ sandbox: id }),
      });
      log.info('sandbox ready', { sandbox: id, ...booted.timeline });
      return new Sandbox(id, booted.vm, booted.agent, booted.timeline, sharedDir, vmDir, settings, native, booted.proxy, network ?? preparedNic, log.child({ sandbox: id }));
    } catch (err) {
      log.error('sandbox failed to start', { sandbox: id, error: (err as Error).message });
      await network?.detach();
      await unmountAndRemove(native, sharedDir).catch(() => undefined);
      throw err;
    } finally {
      // QEMU holds the taps now (or is gone): they go away with it.
      network?.closeTapFds();
      aborted.dispose();
    }
  }

  #rootfsTarget(containerId: string): string {
    return join(this.sharedDir, containerId, 'rootfs');
  }

  /** Where a bind mount's source is shared, relative to the share's root. */
  static #mountShare(containerId: string, index: number): string {
    return `${containerId}/mounts/${index}`;
  }

  /**
   * Shares the rootfs and every bind-mount source into the VM and creates the container (not
   * started) in the guest, joined to its pod's namespaces as its spec asks.
   */
  async createContainer(containerId: string, o: ContainerOptions): Promise<void> {
    const role = o.role ?? 'standalone';
    const spec = (this.#natWillServe(role) ? await this.#withNatResolvConf(o.spec as SpecLike) : o.spec) as SpecLike;
    const plan = planMounts(spec.mounts ?? [], inspectSource);
    const rootfs = inspectSource(o.rootfs);
    if (!rootfs?.isDirectory) throw new SpecError(`container ${containerId}: its root filesystem ${o.rootfs} is not a folder on the host`);
    try {
      await bindMount(this.native, o.rootfs, this.#rootfsTarget(containerId));
      for (const m of plan) if (m.kind === 'share') await shareSource(this.native, m.source, join(this.sharedDir, Sandbox.#mountShare(containerId, m.index)), m);
      await this.agent.call('createContainer', {
        containerId,
        ociSpecJson: JSON.stringify(spec),
        rootfsPath: `${containerId}/rootfs`,
        podSandbox: role === 'pod-sandbox',
        podNamespaces: podNamespacesToJoin(spec, role),
        mountSources: plan.map((m) => ({
          index: m.index,
          source:
            m.kind === 'share'
              ? { $case: 'sharedPath' as const, value: Sandbox.#mountShare(containerId, m.index) }
              : { $case: 'podTmpfs' as const, value: { name: m.name, sizeBytes: m.sizeBytes } },
        })),
      });
      this.#containers.add(containerId);
      if ((this.#network || this.#preparedNic) && this.#networkHolder === undefined && role !== 'pod-member') this.#networkHolder = containerId;
    } catch (err) {
      await this.#unshare(containerId);
      throw err;
    }
  }

  /** The container that will hold a network nobody else fills, when user-mode NAT is to fill it. */
  #natWillServe(role: ContainerOptions['role']): boolean {
    return this.settings.userNat && this.#preparedNic !== undefined && this.#networkHolder === undefined && role !== 'pod-member';
  }

  /** The NAT's resolver as the container's /etc/resolv.conf, unless its spec mounts one. */
  async #withNatResolvConf(spec: SpecLike): Promise<SpecLike> {
    if (spec.mounts?.some((m) => m.destination === '/etc/resolv.conf')) return spec;
    const file = join(this.vmDir, 'resolv.conf');
    await writeFile(file, USER_NAT_RESOLV_CONF, { mode: 0o644 });
    return { ...spec, mounts: [...(spec.mounts ?? []), resolvConfMount(file)] };
  }

  async #unshare(containerId: string): Promise<void> {
    const mountsDir = join(this.sharedDir, containerId, 'mounts');
    for (const entry of await readdir(mountsDir).catch(() => [])) await unshareSource(this.native, join(mountsDir, entry));
    await rmdir(mountsDir).catch(() => undefined);
    await unmountAndRemove(this.native, this.#rootfsTarget(containerId));
    await rmdir(join(this.sharedDir, containerId)).catch(() => undefined);
  }

  /** Starts the container's main process. Its output streams are attached before it runs. */
  async startContainer(containerId: string): Promise<{ pid: number; process: ProcessHandle }> {
    // The network is in place before the container's first instruction: the agent makes the
    // namespace the container joins when it starts.
    if (containerId === this.#networkHolder) {
      if (this.#preparedNic) await this.#adoptLateNetwork(this.#preparedNic);
      if (this.#network) await this.#configureGuestNetwork(containerId, this.#network);
    }
    const process = new ProcessHandle(this.agent, containerId, '');
    const { pid } = await this.agent.call('startContainer', { containerId });
    return { pid, process };
  }

  /** Mirrors what CNI put in the VMM's own namespace after create to the NIC the VM has. */
  async #adoptLateNetwork(prepared: PreparedNic): Promise<void> {
    this.#preparedNic = undefined;
    if (this.vm.pid === undefined) throw new Error(`sandbox ${this.id}: its VM has no pid, so no network namespace to read`);
    const netns = `/proc/${this.vm.pid}/ns/net`;
    this.#network = await PodNetwork.adopt(netns, prepared, this.log);
    if (this.#network || !this.settings.userNat) return;
    // Nobody filled it: the NAT's interface appears there, and is carried over like CNI's.
    this.#nat = await UserNat.start(this.vm.pid, USER_NAT_INTERFACE, this.log);
    this.#network = await PodNetwork.adopt(netns, prepared, this.log);
  }

  /** Tells the agent the pod's interfaces and routes, as CNI set them up on the host. */
  async #configureGuestNetwork(containerId: string, network: PodNetwork): Promise<void> {
    for (const nic of network.nics)
      await this.agent.call('updateInterface', { containerId, interface: { name: nic.name, mac: nic.mac, deviceMac: nic.deviceMac, mtu: nic.mtu, addresses: nic.addresses } });
    await this.agent.call('updateRoutes', { containerId, routes: network.routes });
    this.log.info('guest network configured', { container: containerId, interfaces: network.nics.map((n) => n.name), routes: network.routes.length });
  }

  async exec(containerId: string, execId: string, processSpec: Record<string, unknown>): Promise<{ pid: number; process: ProcessHandle }> {
    const res = this.agent.call('execProcess', { containerId, execId, processJson: JSON.stringify(processSpec) });
    // The output streams wait in the agent until the process exists.
    const { pid } = await res;
    return { pid, process: new ProcessHandle(this.agent, containerId, execId) };
  }

  /** A process outside every container, on a terminal of its own; refused unless the settings enable the debug console. */
  async startDebugConsole(execId: string, args: string[], env: string[], size: { rows: number; columns: number }): Promise<{ pid: number; process: ProcessHandle }> {
    if (!this.settings.debugConsoleEnabled) throw new DebugConsoleDisabledError(this.id);
    const { pid } = await this.agent.call('startDebugConsole', { execId, args, env, ...size });
    this.log.warn('debug console process started in the guest', { exec: execId, command: args[0], pid });
    return { pid, process: new ProcessHandle(this.agent, '', execId) };
  }

  /** Answers at the guest's next OOM kill with the container it hit; fails once the sandbox is gone. */
  async nextOomKill(): Promise<string> {
    return (await this.agent.call('getOomEvent', {}, null)).containerId;
  }

  async listProcesses(containerId: string): Promise<ProcessInfo[]> {
    return (await this.agent.call('listProcesses', { containerId })).processes;
  }

  /** Freezes or thaws the container's cgroup in the guest. */
  async setPaused(containerId: string, paused: boolean): Promise<void> {
    await this.agent.call(paused ? 'pauseContainer' : 'resumeContainer', { containerId });
  }

  /** resourcesJson: an OCI LinuxResources object, as JSON. */
  async updateContainer(containerId: string, resourcesJson: string): Promise<void> {
    await this.agent.call('updateContainer', { containerId, resourcesJson });
  }

  async containerStats(containerId: string): Promise<ContainerStats> {
    return this.agent.call('statsContainer', { containerId });
  }

  async removeContainer(containerId: string, force = false): Promise<void> {
    await this.agent.call('removeContainer', { containerId, force });
    this.#containers.delete(containerId);
    await this.#unshare(containerId);
  }

  /** Stops every container and the VM; removes every mount, socket and directory of the sandbox. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#liveness?.stop();
      await this.vm.stop({
        graceful: () => this.agent.call('destroySandbox', { gracePeriodMs: 1000 }, this.settings.shutdownTimeoutMs),
        gracefulMs: this.settings.shutdownTimeoutMs,
      });
      this.agent.close();
      this.proxy?.close();
      await this.#network?.detach();
      await this.#nat?.stop();
      for (const containerId of this.#containers) await this.#unshare(containerId);
      this.#containers.clear();
      await unmountAndRemove(this.native, this.sharedDir);
    })();
    return this.#stopped;
  }
}

export async function ensureRunRoot(settings: SandboxSettings): Promise<void> {
  await mkdir(settings.runRoot, { recursive: true, mode: 0o711 });
}
