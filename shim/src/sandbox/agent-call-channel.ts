// Where each finished agent call is announced (node:diagnostics_channel), so
// that metrics can time the calls without the client knowing of them. Nothing
// is built or sent while no one subscribes.
import diagnostics_channel from 'node:diagnostics_channel';

export const AGENT_CALL_CHANNEL = 'kata-ts:agent:call';

/** One unary agent call that had a deadline (long polls are left out: their time is the guest's). */
export interface AgentCallRecord {
  sandboxId: string;
  method: string;
  seconds: number;
  ok: boolean;
}

export const agentCallChannel = diagnostics_channel.channel(AGENT_CALL_CHANNEL);

/** Times `result` and announces it once it settles; the caller keeps its own handling of `result`. */
export function announceAgentCall(sandboxId: string, method: string, result: Promise<unknown>): void {
  if (!agentCallChannel.hasSubscribers) return;
  const started = performance.now();
  const done = (ok: boolean) => {
    const record: AgentCallRecord = { sandboxId, method, seconds: (performance.now() - started) / 1000, ok };
    agentCallChannel.publish(record);
  };
  result.then(
    () => done(true),
    () => done(false),
  );
}

/**
 * Keeps one sandbox's call records from the moment it is made until a sink
 * takes them (the metrics load only at the first scrape), then hands each
 * new one straight on. Holds at most MAX_PENDING meanwhile.
 */
export class AgentCallRecorder {
  static readonly MAX_PENDING = 4096;
  #pending: AgentCallRecord[] = [];
  #sink: ((record: AgentCallRecord) => void) | undefined;
  readonly #onMessage = (message: unknown) => {
    const record = message as AgentCallRecord;
    if (record.sandboxId !== this.sandboxId) return;
    if (this.#sink) this.#sink(record);
    else if (this.#pending.length < AgentCallRecorder.MAX_PENDING) this.#pending.push(record);
  };

  constructor(readonly sandboxId: string) {
    agentCallChannel.subscribe(this.#onMessage);
  }

  /** From now on every record goes to sink, those kept so far first. */
  attach(sink: (record: AgentCallRecord) => void): void {
    this.#sink = sink;
    for (const record of this.#pending.splice(0)) sink(record);
  }

  close(): void {
    agentCallChannel.unsubscribe(this.#onMessage);
    this.#pending = [];
  }
}
