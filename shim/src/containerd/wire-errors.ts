// The one place where failures become the ttrpc codes containerd acts on;
// task-methods.ts applies it to every Task API call.
import { HostCapabilityError } from '../hypervisor/accel.js';
import { LateNetworkError, NetnsGoneError } from '../network/pod-network.js';
import { AgentCallError, SandboxDeadError, SpecError } from '../sandbox/errors.js';
import { Code, TtrpcError } from '../ttrpc/status.js';
import { ConfigError } from './config.js';
import { SizeAnnotationError } from './vm-sizing.js';

/** Turns a sandbox failure into the ttrpc error containerd acts on; task-methods.ts applies it to every rpc. */
export function toTtrpcError(err: unknown): TtrpcError {
  if (err instanceof TtrpcError) return err;
  if (err instanceof ConfigError || err instanceof SizeAnnotationError) return new TtrpcError(Code.INVALID_ARGUMENT, err.message);
  if (err instanceof AgentCallError) return new TtrpcError(err.code as number as Code, err.message);
  if (err instanceof SandboxDeadError) return new TtrpcError(Code.UNAVAILABLE, err.message);
  if (err instanceof SpecError) return new TtrpcError(err.unsupported ? Code.FAILED_PRECONDITION : Code.INVALID_ARGUMENT, err.message);
  // The host cannot do what the configuration asks (accel = "kvm" without a usable KVM, vsock without vhost-vsock),
  // or the network is not one a VM can carry.
  if (err instanceof HostCapabilityError || err instanceof NetnsGoneError || err instanceof LateNetworkError) return new TtrpcError(Code.FAILED_PRECONDITION, err.message);
  return new TtrpcError(Code.UNKNOWN, (err as Error)?.message ?? String(err));
}
