// The lifecycle of one task process (a container's init or an exec), as
// containerd sees it. Every transition is checked here, so the Task service
// answers an illegal request with the precise error containerd acts on.
import { TtrpcError, Code } from '../ttrpc/status.js';

/** containerd.v1.types.Status */
export enum TaskStatus {
  UNKNOWN = 0,
  CREATED = 1,
  RUNNING = 2,
  STOPPED = 3,
  PAUSED = 4,
}

export interface ExitRecord {
  status: number;
  at: Date;
}

export class ProcessState {
  #status = TaskStatus.CREATED;
  #pid = 0;
  #exit: ExitRecord | undefined;
  /** Settles when a start in flight has succeeded or failed. */
  #starting: Promise<void> | undefined;
  #startSettled: (() => void) | undefined;
  readonly #exited: Promise<ExitRecord>;
  #resolveExited!: (exit: ExitRecord) => void;

  constructor(readonly name: string) {
    this.#exited = new Promise((resolve) => (this.#resolveExited = resolve));
  }

  get status(): TaskStatus {
    return this.#status;
  }
  get pid(): number {
    return this.#pid;
  }
  get exit(): ExitRecord | undefined {
    return this.#exit;
  }
  /** Resolves when the process has exited (and its output was flushed). */
  get exited(): Promise<ExitRecord> {
    return this.#exited;
  }

  #fail(action: string): never {
    throw new TtrpcError(Code.FAILED_PRECONDITION, `cannot ${action} ${this.name}: it is ${TaskStatus[this.#status]!.toLowerCase()}`);
  }

  beginStart(): void {
    if (this.#status !== TaskStatus.CREATED) this.#fail('start');
    if (this.#starting) throw new TtrpcError(Code.FAILED_PRECONDITION, `cannot start ${this.name}: it is being started`);
    this.#starting = new Promise((resolve) => (this.#startSettled = resolve));
  }

  started(pid: number): void {
    this.#pid = pid;
    if (this.#status === TaskStatus.CREATED) this.#status = TaskStatus.RUNNING;
    this.#startSettled?.();
  }

  /** The start failed: the process is as it was before (created, never run). */
  startFailed(): void {
    this.#starting = undefined;
    this.#startSettled?.();
  }

  /**
   * Resolves once no start is in flight, so a Kill or Delete sees the state the start left
   * (running, or still created if it failed) rather than the one it began from.
   */
  get startSettled(): Promise<void> {
    return this.#starting ?? Promise.resolve();
  }

  /** Exit before or after start (a start that failed also ends here). */
  stopped(exit: ExitRecord): void {
    if (this.#status === TaskStatus.STOPPED) return;
    this.#status = TaskStatus.STOPPED;
    this.#exit = exit;
    this.#resolveExited(exit);
  }

  paused(): void {
    if (this.#status !== TaskStatus.RUNNING) this.#fail('pause');
    this.#status = TaskStatus.PAUSED;
  }

  resumed(): void {
    if (this.#status !== TaskStatus.PAUSED) this.#fail('resume');
    this.#status = TaskStatus.RUNNING;
  }

  requireRunning(action: string): void {
    if (this.#status !== TaskStatus.RUNNING && this.#status !== TaskStatus.PAUSED) this.#fail(action);
  }

  /** Delete is allowed for a stopped process, or one that was created and never started. */
  checkDeletable(): void {
    if (this.#status === TaskStatus.RUNNING || this.#status === TaskStatus.PAUSED) this.#fail('delete');
  }
}
