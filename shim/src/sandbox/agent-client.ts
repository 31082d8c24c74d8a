// The host's client for the in-guest agent: unary calls with per-call
// deadlines, output streams, and a clear error (never a hang) when the VM
// dies under a call.
import { credentials, Metadata, status, type ClientReadableStream, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { AgentClient as GrpcAgentClient, type OutputChunk } from '../../../proto/gen/agent.js';
import { announceAgentCall } from './agent-call-channel.js';
import { AgentCallError, BootTimeoutError, SandboxDeadError } from './errors.js';

/** Methods of the generated client whose last argument is a unary callback. */
type UnaryMethod = {
  [K in keyof GrpcAgentClient]: GrpcAgentClient[K] extends (
    req: infer Req,
    metadata: Metadata,
    options: { deadline?: number },
    cb: (err: ServiceError | null, res: infer Res) => void,
  ) => unknown
    ? [Req, Res]
    : never;
};
type UnaryName = { [K in keyof UnaryMethod]: UnaryMethod[K] extends never ? never : K }[keyof GrpcAgentClient];
type RequestOf<K extends UnaryName> = UnaryMethod[K][0];
type ResponseOf<K extends UnaryName> = UnaryMethod[K][1];

/** How long a dropped connection waits for the VM's exit before it is reported as a plain call error. */
const VM_EXIT_GRACE_MS = 1000;

export interface AgentClientOptions {
  sandboxId: string;
  /** unix socket path that reaches the agent (QEMU's serial socket, or the vsock proxy). */
  socketPath: string;
  /** Resolves when the VM is gone; every pending call then fails with SandboxDeadError. */
  vmExited: Promise<unknown>;
  /** Text that explains why the VM died (console or QEMU stderr tail). */
  deathDetail: () => string;
  defaultTimeoutMs: number;
}

export class AgentClient {
  readonly #grpc: GrpcAgentClient;
  /**
   * Calls not yet ended. Closing the channel does not end them (grpc-js keeps a connection for its
   * open streams), and an agent may never answer one that has no deadline: close() cancels them.
   */
  readonly #inFlight = new Set<{ cancel(): void }>();
  #dead = false;
  readonly #died: Promise<never>;

  constructor(private readonly o: AgentClientOptions) {
    this.#grpc = new GrpcAgentClient(`unix://${o.socketPath}`, credentials.createInsecure(), {
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      // One host connection at a time is all a virtio-serial port serves; reconnect quickly after a drop.
      'grpc.initial_reconnect_backoff_ms': 20,
      'grpc.max_reconnect_backoff_ms': 200,
      'grpc.enable_retries': 0,
      // A large receive window: with HTTP/2's default 64 KiB the guest waits for a WINDOW_UPDATE every 64 KiB of output.
      'grpc-node.flow_control_window': 8 * 1024 * 1024,
    });
    this.#died = o.vmExited.then(() => {
      this.#dead = true;
      throw new SandboxDeadError(o.sandboxId, 'an agent call', o.deathDetail());
    });
    this.#died.catch(() => undefined);
  }

  /** A unary call; fails with AgentCallError, or SandboxDeadError if the VM exits first. */
  call<K extends UnaryName>(method: K, request: RequestOf<K>, timeoutMs: number | null = this.o.defaultTimeoutMs): Promise<ResponseOf<K>> {
    const result = this.#call(method, request, timeoutMs, (m, err) => this.explain(m, err));
    if (timeoutMs !== null) announceAgentCall(this.o.sandboxId, String(method), result);
    return result;
  }

  #call<K extends UnaryName>(
    method: K,
    request: RequestOf<K>,
    timeoutMs: number | null,
    explain: (method: string, err: unknown) => Promise<Error>,
  ): Promise<ResponseOf<K>> {
    if (this.#dead) return Promise.reject(new SandboxDeadError(this.o.sandboxId, `agent ${String(method)}`, this.o.deathDetail()));
    const options = timeoutMs === null ? {} : { deadline: Date.now() + timeoutMs };
    const fn = (this.#grpc[method] as unknown as (...args: unknown[]) => unknown).bind(this.#grpc);
    const result = new Promise<ResponseOf<K>>((resolve, reject) => {
      const call = fn(request, new Metadata(), options, (err: ServiceError | null, res: ResponseOf<K>) => {
        if (!err) return resolve(res);
        explain(String(method), err).then(reject, reject);
      }) as ClientUnaryCall;
      this.#track(call);
    });
    return Promise.race([result, this.#died.catch(() => Promise.reject(new SandboxDeadError(this.o.sandboxId, `agent ${String(method)}`, this.o.deathDetail())))]);
  }

  /**
   * The error a failed call should report. A dropped connection usually means
   * the VM is going away: wait a moment for its exit, and if it came, say so.
   */
  async explain(method: string, err: unknown): Promise<Error> {
    const callError = AgentCallError.from(method, err);
    if (callError.code !== status.UNAVAILABLE && callError.code !== status.CANCELLED && callError.code !== status.INTERNAL) return callError;
    const died = await Promise.race([
      this.o.vmExited.then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), VM_EXIT_GRACE_MS).unref()),
    ]);
    return died ? new SandboxDeadError(this.o.sandboxId, `agent ${method}`, this.o.deathDetail()) : callError;
  }

  /** Opens an output stream (ReadStdout / ReadStderr). */
  readOutput(which: 'readStdout' | 'readStderr', containerId: string, execId: string): ClientReadableStream<OutputChunk> {
    return this.#track(this.#grpc[which]({ containerId, execId }));
  }

  #track<C extends ClientUnaryCall | ClientReadableStream<unknown>>(call: C): C {
    this.#inFlight.add(call);
    // grpc-js emits 'status' once, however the call ends (never synchronously).
    call.once('status', () => this.#inFlight.delete(call));
    return call;
  }

  /** Calls Check until the agent answers or the boot deadline passes; fails at once if the VM exits. */
  async waitReady(deadlineAt: number, budgetMs: number): Promise<void> {
    let lastError = 'no answer';
    while (Date.now() < deadlineAt) {
      try {
        // While booting, a refused connection is expected: retry at once instead of waiting to see if the VM died.
        await this.#call('check', {}, Math.max(1, deadlineAt - Date.now()), async (m, err) => AgentCallError.from(m, err));
        return;
      } catch (err) {
        if (err instanceof SandboxDeadError) throw new SandboxDeadError(this.o.sandboxId, 'boot', this.o.deathDetail());
        lastError = (err as Error).message;
        if (err instanceof AgentCallError && err.code !== status.UNAVAILABLE && err.code !== status.DEADLINE_EXCEEDED) throw err;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    throw new BootTimeoutError(this.o.sandboxId, budgetMs, lastError);
  }

  /** Ends every call still in flight (they fail as cancelled) and closes the channel. */
  close(): void {
    for (const call of this.#inFlight) call.cancel();
    this.#inFlight.clear();
    this.#grpc.close();
  }
}
