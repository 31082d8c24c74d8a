// A pod's network on the host: for each interface CNI put in the pod's
// network namespace, a tap beside it with traffic mirrored both ways (tc), and
// the tap's fd for the VMM, which stays in the host's namespace. Undone
// whole on detach, and when attaching fails half way.
import { closeSync, existsSync } from 'node:fs';
import type { Logger } from '../../../common/log.js';
import type { NativeAddon } from '../../../native/native.js';
import { readNetns, type NetInterface, type NetRoute } from './netns-links.js';
import { mirror, tapName, unmirror } from './tc-mirror.js';

export const VHOST_NET_DEVICE = '/dev/vhost-net';

/** vhost-net moves the data path into the host kernel, where it is allowed and the host has it. */
export const useVhostNet = (allowed: boolean) => allowed && existsSync(VHOST_NET_DEVICE);

export interface PodNic extends NetInterface {
  tap: string;
  /** The MAC of the guest NIC on that tap; the agent finds the NIC by it and gives it the interface's. */
  deviceMac: string;
}

/** A NIC the VM was given at launch, before any CNI interface existed to match. */
export interface PreparedNic {
  tap: string;
  deviceMac: string;
}

export class LateNetworkError extends Error {
  constructor(readonly netnsPath: string, readonly interfaces: string[]) {
    super(
      `CNI put ${interfaces.length} interfaces (${interfaces.join(', ')}) in ${netnsPath} after the sandbox was created; ` +
        'a network set up after create can carry one (ctr run --cni uses one network)',
    );
    this.name = 'LateNetworkError';
  }
}

export class NetnsGoneError extends Error {
  constructor(readonly netnsPath: string) {
    super(`the pod's network namespace ${netnsPath} is gone`);
    this.name = 'NetnsGoneError';
  }
}

export class PodNetwork {
  #tapFds: number[];
  #detached: Promise<void> | undefined;

  private constructor(
    readonly netnsPath: string,
    readonly nics: PodNic[],
    readonly routes: NetRoute[],
    tapFds: number[],
    /** vhost-net moves the data path into the host kernel; QEMU's userspace virtio-net otherwise. */
    readonly vhost: boolean,
    private readonly log: Logger,
  ) {
    this.#tapFds = tapFds;
  }

  /** Reads the namespace, and mirrors each interface to a new tap. */
  static async attach(netnsPath: string, o: { allowVhost: boolean }, native: NativeAddon, log: Logger): Promise<PodNetwork> {
    if (!existsSync(netnsPath)) throw new NetnsGoneError(netnsPath);
    const { interfaces, routes } = await readNetns(netnsPath);
    const vhost = useVhostNet(o.allowVhost);
    const network = new PodNetwork(netnsPath, [], routes, [], vhost, log);
    try {
      for (const [index, nic] of interfaces.entries()) {
        const tap = tapName(index);
        network.#tapFds.push(native.openTap(netnsPath, tap));
        network.nics.push({ ...nic, tap, deviceMac: nic.mac });
        await mirror(netnsPath, nic.name, tap, nic.mtu);
      }
    } catch (err) {
      await network.detach();
      throw err;
    }
    log.info('pod network attached', {
      netns: netnsPath,
      interfaces: network.nics.map((n) => `${n.name}=${n.tap} ${n.addresses.map((a) => `${a.address}/${a.prefixLength}`).join(',')} mtu ${n.mtu}`),
      routes: routes.length,
      virtioNet: vhost ? 'vhost-net' : o.allowVhost ? `userspace (no ${VHOST_NET_DEVICE})` : 'userspace (disable_vhost_net)',
    });
    return network;
  }

  /**
   * For a namespace CNI filled after the VM started (ctr run --cni): its one interface is mirrored
   * to the tap the VM already has. Undefined when CNI put nothing there (loopback only).
   */
  static async adopt(netnsPath: string, prepared: PreparedNic, log: Logger): Promise<PodNetwork | undefined> {
    if (!existsSync(netnsPath)) throw new NetnsGoneError(netnsPath);
    const { interfaces, routes } = await readNetns(netnsPath);
    if (interfaces.length === 0) return undefined;
    if (interfaces.length > 1) throw new LateNetworkError(netnsPath, interfaces.map((i) => i.name));
    const nic = interfaces[0]!;
    const network = new PodNetwork(netnsPath, [{ ...nic, ...prepared }], routes, [], false, log);
    try {
      await mirror(netnsPath, nic.name, prepared.tap, nic.mtu);
    } catch (err) {
      await network.detach();
      throw err;
    }
    log.info('network set up after create attached', { netns: netnsPath, interface: `${nic.name}=${prepared.tap}`, routes: routes.length });
    return network;
  }

  /** The taps' fds, in the order of nics: the VMM gets them at launch. */
  get tapFds(): readonly number[] {
    return this.#tapFds;
  }

  /** Once the VMM holds the taps: each tap then goes away with the VMM. */
  closeTapFds(): void {
    for (const fd of this.#tapFds.splice(0)) closeSync(fd);
  }

  /** Removes the mirrors from the CNI interfaces (the taps go with their last fd); idempotent. */
  detach(): Promise<void> {
    this.#detached ??= (async () => {
      this.closeTapFds();
      if (!existsSync(this.netnsPath)) return; // CNI removed it first: nothing of ours is left there
      for (const nic of this.nics)
        await unmirror(this.netnsPath, nic.name).catch((err: Error) => this.log.warn('cannot remove the traffic mirror', { interface: nic.name, error: err.message }));
    })();
    return this.#detached;
  }
}
