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
  }

  started(pid: number): void {
    this.#pid = pid;
    if (this.#status === TaskStatus.CREATED) this.#status = TaskStatus.RUNNING;
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
