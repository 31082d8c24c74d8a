// Errors of the host side of a sandbox, with the context a user needs.
import { status, type ServiceError } from '@grpc/grpc-js';

/** A call to the agent failed; `code` is the gRPC status the agent (or the transport) gave. */
export class AgentCallError extends Error {
  constructor(
    readonly method: string,
    readonly code: status,
    readonly details: string,
    options?: { cause?: unknown },
  ) {
    super(`agent ${method}: ${status[code] ?? code}: ${details}`, options);
    this.name = 'AgentCallError';
  }

  static from(method: string, err: unknown): AgentCallError {
    if (err instanceof AgentCallError) return err;
    const e = err as Partial<ServiceError>;
    return new AgentCallError(method, e.code ?? status.UNKNOWN, e.details ?? (err as Error).message ?? String(err), { cause: err });
  }
}

/** The VM went away while something was waiting on it. */
export class SandboxDeadError extends Error {
  constructor(
    readonly sandboxId: string,
    readonly during: string,
    readonly detail: string,
  ) {
    super(`sandbox ${sandboxId}: the VM exited during ${during}${detail ? `: ${detail}` : ''}`);
    this.name = 'SandboxDeadError';
  }
}

export class BootTimeoutError extends Error {
  constructor(
    readonly sandboxId: string,
    readonly deadlineMs: number,
    readonly lastError: string,
  ) {
    super(`sandbox ${sandboxId}: the agent did not answer within ${deadlineMs} ms of QEMU starting (last error: ${lastError})`);
    this.name = 'BootTimeoutError';
  }
}

/**
 * A container spec the sandbox cannot run as asked: a bind source that does not exist, or what a
 * VM cannot give (the host's own namespaces). `unsupported` tells the two apart for the wire code.
 */
export class SpecError extends Error {
  constructor(
    message: string,
    readonly unsupported = false,
  ) {
    super(message);
    this.name = 'SpecError';
  }
}

/** The sandbox's configuration leaves the debug console off (agent.debug_console_enabled). */
export class DebugConsoleDisabledError extends Error {
  constructor(readonly sandboxId: string) {
    super(
      `sandbox ${sandboxId}: the debug console is off; set debug_console_enabled = true in the [agent] section of the configuration ` +
        '(a root shell in the guest outside every container: see docs/configuration.md) and start the sandbox again',
    );
    this.name = 'DebugConsoleDisabledError';
  }
}
