// A VMM that runs no VM: it starts a fake agent on the socket the sandbox will
// dial, and its stop closes that agent, as a VM's end closes its channel.
import { mkdir, rm } from 'node:fs/promises';
import type { ExitStatus } from '../../shim/src/hypervisor/child.js';
import type { LaunchVmm, StopOptions, Vmm, VmLaunchOptions } from '../../shim/src/hypervisor/vmm.js';

export interface Closeable {
  close(): Promise<void>;
}

export interface FakeVmm extends Vmm {
  /** How many times stop was called. */
  readonly stops: number;
  /** The VM dies on its own: its agent's channel closes and `exited` resolves. */
  crash(): Promise<void>;
}

/** What the stderr of a fake VM says; an error that quotes it came through deathDetail. */
export const FAKE_VMM_STDERR = 'fake vmm: no VM ran';

export function fakeLaunchVmm(startAgent: (socketPath: string) => Promise<Closeable>, launched: (vmm: FakeVmm) => void = () => undefined): LaunchVmm {
  return async (o) => {
    const vmm = await FakeVmmImpl.launch(o, startAgent);
    launched(vmm);
    return vmm;
  };
}

class FakeVmmImpl implements FakeVmm {
  readonly name = 'fake';
  readonly pid = undefined;
  readonly spawnedAt = performance.now();
  readonly exited: Promise<ExitStatus>;
  stops = 0;
  #exit!: (s: ExitStatus) => void;
  #ended: Promise<void> | undefined;

  private constructor(
    readonly runDir: string,
    private readonly agent: Closeable,
  ) {
    this.exited = new Promise((resolve) => (this.#exit = resolve));
  }

  static async launch(o: VmLaunchOptions, startAgent: (socketPath: string) => Promise<Closeable>): Promise<FakeVmmImpl> {
    const channel = o.description.agentChannel;
    if (channel.kind !== 'serial') throw new Error('the fake VMM serves the serial channel only (settings.agentChannel = "serial")');
    await mkdir(o.runDir, { recursive: true, mode: 0o700 });
    return new FakeVmmImpl(o.runDir, await startAgent(channel.socketPath));
  }

  processes(): [] {
    return [];
  }

  stderr(): string {
    return FAKE_VMM_STDERR;
  }

  async stop(o: StopOptions): Promise<void> {
    this.stops++;
    // Awaited whole, with no deadline of ours: what must bound it is the deadline the shim puts on its call.
    await o.graceful?.().catch(() => undefined);
    await this.#end({ code: 0, signal: null });
  }

  crash(): Promise<void> {
    return this.#end({ code: null, signal: 'SIGKILL' });
  }

  #end(status: ExitStatus): Promise<void> {
    this.#ended ??= (async () => {
      await this.agent.close();
      this.#exit(status);
      await rm(this.runDir, { recursive: true, force: true });
    })();
    return this.#ended;
  }
}
