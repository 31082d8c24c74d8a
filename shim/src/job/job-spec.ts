// The OCI spec of a job's container: the default container spec with the
// job's command, environment, workspace, secrets and limits. Pure.
import { defaultSpec } from '../sandbox/default-spec.js';

export const WORKSPACE_IN_GUEST = '/workspace';
export const SECRETS_IN_GUEST = '/run/secrets';
const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface JobSpecInput {
  command: string[];
  /** The image's then the job's; a later one of the same name wins. */
  env: string[];
  /** Where the job runs without a workspace (the image's WorkingDir). */
  workingDir?: string;
  /** The host folder the guest sees at /workspace (the original, or the copy). */
  workspaceSource?: string;
  /** A host folder with one file per secret, shown read-only at /run/secrets. */
  secretsSource?: string;
  memoryLimitBytes?: number;
  pidsLimit?: number;
}

/** NAME=VALUE pairs with one entry per name, the last one given, in first-seen order. */
export function mergeEnv(env: string[]): string[] {
  const byName = new Map<string, string>();
  for (const e of env) byName.set(e.slice(0, e.indexOf('=')), e);
  return [...byName.values()];
}

export function jobSpec(i: JobSpecInput): Record<string, unknown> {
  const spec = defaultSpec({
    args: i.command,
    env: mergeEnv([PATH, 'HOME=/root', ...(i.workspaceSource ? [`CI_WORKSPACE=${WORKSPACE_IN_GUEST}`] : []), ...i.env]),
    cwd: i.workspaceSource ? WORKSPACE_IN_GUEST : (i.workingDir ?? '/'),
    hostname: 'job',
  }) as { mounts: Record<string, unknown>[]; linux: { resources: Record<string, unknown> } };
  if (i.workspaceSource) spec.mounts.push({ destination: WORKSPACE_IN_GUEST, type: 'bind', source: i.workspaceSource, options: ['rbind', 'rw'] });
  if (i.secretsSource) spec.mounts.push({ destination: SECRETS_IN_GUEST, type: 'bind', source: i.secretsSource, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] });
  if (i.memoryLimitBytes !== undefined) spec.linux.resources.memory = { limit: i.memoryLimitBytes, swap: i.memoryLimitBytes };
  if (i.pidsLimit !== undefined) spec.linux.resources.pids = { limit: i.pidsLimit };
  return spec;
}
