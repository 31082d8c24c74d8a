// Forwards task events to containerd over ttrpc (TTRPC_ADDRESS), in order,
// with a bounded queue and a few retries, as containerd's own shims do.
import type { Logger } from '../../../common/log.js';
import { containerd, google } from '../../../proto/gen/containerd/containerd.js';
import { TtrpcClient } from '../ttrpc/client.js';

const MAX_QUEUE = 2048;
const MAX_ATTEMPTS = 5;
const FORWARD_TIMEOUT_MS = 5000;

export type TaskEvent =
  | { topic: '/tasks/create'; type: 'TaskCreate'; event: containerd.events.ITaskCreate }
  | { topic: '/tasks/start'; type: 'TaskStart'; event: containerd.events.ITaskStart }
  | { topic: '/tasks/exit'; type: 'TaskExit'; event: containerd.events.ITaskExit }
  | { topic: '/tasks/delete'; type: 'TaskDelete'; event: containerd.events.ITaskDelete }
  | { topic: '/tasks/exec-added'; type: 'TaskExecAdded'; event: containerd.events.ITaskExecAdded }
  | { topic: '/tasks/exec-started'; type: 'TaskExecStarted'; event: containerd.events.ITaskExecStarted }
  | { topic: '/tasks/paused'; type: 'TaskPaused'; event: containerd.events.ITaskPaused }
  | { topic: '/tasks/resumed'; type: 'TaskResumed'; event: containerd.events.ITaskResumed }
  | { topic: '/tasks/oom'; type: 'TaskOOM'; event: containerd.events.ITaskOOM };

export function timestamp(date: Date): google.protobuf.ITimestamp {
  const ms = date.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/** The Any that carries an event: bare proto name as type_url, protobuf bytes as value. */
export function encodeEvent(e: TaskEvent): google.protobuf.IAny {
  const type = containerd.events[e.type] as unknown as { encode(m: unknown): { finish(): Uint8Array } };
  return { type_url: `containerd.events.${e.type}`, value: type.encode(e.event).finish() };
}

export class EventPublisher {
  readonly #queue: Array<{ event: TaskEvent; at: Date }> = [];
  #client: TtrpcClient | undefined;
  #draining: Promise<void> | undefined;
  #dropped = 0;

  constructor(
    private readonly address: string | undefined,
    private readonly namespace: string,
    private readonly log: Logger,
  ) {}

  publish(event: TaskEvent): void {
    this.log.debug('event', { topic: event.topic, ...event.event });
    if (!this.address) return;
    if (this.#queue.length >= MAX_QUEUE) {
      this.#dropped++;
      this.log.error('event queue full; dropping event', { topic: event.topic });
      return;
    }
    this.#queue.push({ event, at: new Date() });
    this.#draining ??= this.#drain().finally(() => (this.#draining = undefined));
  }

  /** Events given up on so far: the queue was full, or containerd did not take them. */
  get droppedCount(): number {
    return this.#dropped;
  }

  /** Resolves once everything queued so far was sent (or dropped). */
  async flush(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const { event, at } = this.#queue[0]!;
      for (let attempt = 1; ; attempt++) {
        try {
          await this.#forward(event, at);
          break;
        } catch (err) {
          this.#client?.close();
          this.#client = undefined;
          if (attempt >= MAX_ATTEMPTS) {
            this.#dropped++;
            this.log.error('cannot forward event; dropped', { topic: event.topic, error: (err as Error).message });
            break;
          }
          await new Promise((r) => setTimeout(r, attempt * 100));
        }
      }
      this.#queue.shift();
    }
  }

  async #forward(event: TaskEvent, at: Date): Promise<void> {
    this.#client ??= await TtrpcClient.connect(this.address!);
    const request = containerd.services.events.ttrpc.v1.ForwardRequest.encode({
      envelope: { timestamp: timestamp(at), namespace: this.namespace, topic: event.topic, event: encodeEvent(event) },
    }).finish();
    await this.#client.call('containerd.services.events.ttrpc.v1.Events', 'Forward', request, { timeoutMs: FORWARD_TIMEOUT_MS });
  }

  close(): void {
    this.#client?.close();
  }
}
