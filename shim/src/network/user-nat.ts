// Outbound network for a VM without touching the host's network set-up:
// slirp4netns puts a tap in the VMM's network namespace and relays its
// traffic through ordinary sockets of the host (user-mode NAT). Connections to
// the host's loopback are refused, so services that listen only on 127.0.0.1
// stay out of reach; DNS goes to the host's resolver through 10.0.2.3.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { Logger } from '../../../common/log.js';
import { exitOf, exitWithin, isRunning, tail } from '../hypervisor/child.js';

export const USER_NAT_BINARY = 'slirp4netns';
/** The guest's resolver: slirp4netns forwards it to the host's. */
export const USER_NAT_DNS = '10.0.2.3';
export const USER_NAT_RESOLV_CONF = `nameserver ${USER_NAT_DNS}\n`;
/** The interface slirp4netns makes; the guest NIC takes its name. */
export const USER_NAT_INTERFACE = 'eth0';

/**
 * A container's /etc/resolv.conf from a host file, read-only. The guest's runtime resolves the
 * target inside the container's root, so an image whose /etc is a symlink cannot redirect it.
 */
export function resolvConfMount(source: string): { destination: string; type: string; source: string; options: string[] } {
  return { destination: '/etc/resolv.conf', type: 'bind', source, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] };
}
const READY_FD = 3;
const EXIT_FD = 4;
const READY_TIMEOUT_MS = 10_000;

export class UserNatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserNatError';
  }
}

export class UserNat {
  private constructor(
    private readonly child: ChildProcess,
    private readonly log: Logger,
  ) {}

  /**
   * Gives the network namespace of `pid` an interface `ifname` with an address, a default route
   * and DNS, and resolves once it is configured. The relay ends when stop() is called and also
   * when this process dies (its exit fd closes).
   */
  static async start(pid: number, ifname: string, log: Logger): Promise<UserNat> {
    const args = ['--configure', '--disable-host-loopback', '--enable-sandbox', '--enable-seccomp', `--ready-fd=${READY_FD}`, `--exit-fd=${EXIT_FD}`, String(pid), ifname];
    // Its sandbox (a mount namespace it pivots out of) must start from private copies of the host's
    // mounts: from shared ones, its unmounts reach the host's and take a sandbox's shares away.
    const child = spawn('unshare', ['--mount', '--propagation', 'private', '--', USER_NAT_BINARY, ...args], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    const stderr = tail(child.stderr);
    const nat = new UserNat(child, log);
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new UserNatError(`${USER_NAT_BINARY} did not configure the network within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      (child.stdio[READY_FD] as Readable).once('data', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new UserNatError(`cannot run ${USER_NAT_BINARY}: ${err.message}`));
      });
      void exitOf(child).then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new UserNatError(`${USER_NAT_BINARY} exited (${signal ?? `status ${code}`}) before the network was up: ${stderr() || 'no message'}`));
      });
    });
    try {
      await ready;
      (child.stdio[READY_FD] as Readable).destroy();
    } catch (err) {
      await nat.stop();
      throw err;
    }
    log.info('user-mode NAT up', { pid: child.pid, vmmPid: pid, interface: ifname });
    return nat;
  }

  /** Ends the relay: closing its exit fd asks it to go, SIGKILL if it does not. */
  async stop(): Promise<void> {
    if (!isRunning(this.child)) return;
    (this.child.stdio[EXIT_FD] as Readable).destroy();
    if (await exitWithin(this.child, 1000)) return;
    this.log.warn('user-mode NAT did not end when asked; killing it', { pid: this.child.pid });
    this.child.kill('SIGKILL');
    await exitOf(this.child);
  }
}
