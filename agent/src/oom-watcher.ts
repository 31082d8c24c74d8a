// Notices when the kernel OOM-kills a process in a container: watches each
// container cgroup's memory.events (inotify reports its changes on cgroup v2)
// and queues the container id when its oom_kill count grows.
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/log.js';
import { parseFlatKeyed } from './cgroup-stats.js';

export class OomWatcher {
  readonly #watchers = new Map<string, FSWatcher>();
  readonly #counts = new Map<string, number>();
  readonly #queue: string[] = [];
  readonly #waiters: Array<(containerId: string) => void> = [];

  constructor(private readonly log: Logger) {}

  async add(containerId: string, cgroupDir: string): Promise<void> {
    const file = join(cgroupDir, 'memory.events');
    const read = async () => parseFlatKeyed(await readFile(file, 'utf8').catch(() => '')).get('oom_kill') ?? 0;
    this.#counts.set(containerId, await read());
    try {
      const watcher = watch(file, () => {
        void read().then((count) => {
          const before = this.#counts.get(containerId) ?? 0;
          this.#counts.set(containerId, count);
          if (count > before) this.#emit(containerId);
        });
      });
      watcher.on('error', () => this.remove(containerId));
      this.#watchers.set(containerId, watcher);
    } catch (err) {
      // crun removes the cgroup once the container's process exits: a quick one is gone before the watch.
      const gone = (err as NodeJS.ErrnoException).code === 'ENOENT';
      this.log[gone ? 'debug' : 'warn']('cannot watch for OOM kills', { container: containerId, error: (err as Error).message, exited: gone });
    }
  }

  remove(containerId: string): void {
    this.#watchers.get(containerId)?.close();
    this.#watchers.delete(containerId);
    this.#counts.delete(containerId);
  }

  #emit(containerId: string): void {
    this.log.info('container had a process OOM-killed', { container: containerId });
    const waiter = this.#waiters.shift();
    if (waiter) waiter(containerId);
    else this.#queue.push(containerId);
  }

  /** The next OOM kill's container id; waits until there is one. */
  next(signal?: { once(event: 'cancelled', fn: () => void): unknown }): Promise<string> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      signal?.once('cancelled', () => {
        const i = this.#waiters.indexOf(resolve);
        if (i >= 0) this.#waiters.splice(i, 1);
      });
    });
  }
}
