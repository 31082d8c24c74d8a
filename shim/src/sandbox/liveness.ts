// Notices a guest that no longer answers although its VMM still runs: a
// stopped (SIGSTOP) or wedged QEMU, a hung guest kernel or agent. The agent is
// asked for a sign of life at a steady pace; once none has come for `silentMs`,
// `onSilent` runs, once. A VMM that exits is noticed elsewhere, at once.

export interface LivenessOptions {
  /** One sign of life; rejects (or never settles) when none comes. */
  check: (timeoutMs: number) => Promise<unknown>;
  /** How long the guest may stay silent. */
  silentMs: number;
  onSilent: (silentForMs: number) => void;
}

/** Checks this often within a silence bound, and never more than once a second. */
const CHECKS_PER_BOUND = 4;
const MIN_INTERVAL_MS = 1000;

export class LivenessWatch {
  #timer: NodeJS.Timeout | undefined;
  #lastSign = Date.now();
  #checking = false;

  constructor(private readonly o: LivenessOptions) {}

  start(): void {
    this.#lastSign = Date.now();
    const interval = Math.max(MIN_INTERVAL_MS, Math.floor(this.o.silentMs / CHECKS_PER_BOUND));
    this.#timer = setInterval(() => this.#tick(), interval);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    const silentFor = Date.now() - this.#lastSign;
    if (silentFor >= this.o.silentMs) {
      this.stop();
      this.o.onSilent(silentFor);
      return;
    }
    // A check still under way is not doubled: the silence counts on.
    if (this.#checking) return;
    this.#checking = true;
    this.o
      .check(this.o.silentMs)
      .then(
        () => void (this.#lastSign = Date.now()),
        () => undefined,
      )
      .finally(() => (this.#checking = false));
  }
}
