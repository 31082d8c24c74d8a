// Errors the agent returns, each carrying the gRPC status code that says what went wrong.
import { status } from '@grpc/grpc-js';

export class AgentError extends Error {
  constructor(
    readonly code: status,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AgentError';
  }
}

export const notFound = (what: string) => new AgentError(status.NOT_FOUND, `${what} not found`);
export const alreadyExists = (what: string) => new AgentError(status.ALREADY_EXISTS, `${what} already exists`);
export const invalidArgument = (message: string) => new AgentError(status.INVALID_ARGUMENT, message);
export const permissionDenied = (message: string) => new AgentError(status.PERMISSION_DENIED, message);
export const failedPrecondition = (message: string) => new AgentError(status.FAILED_PRECONDITION, message);

/** Any thrown value as an AgentError; unknown failures become INTERNAL with their message kept. */
export function toAgentError(err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new AgentError(status.INTERNAL, message, { cause: err });
}
