// The real `ctr` against one containerd and namespace: for the job runner's
// containerd images and the GitLab driver's job VMs.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ContainerdTarget {
  address: string;
  namespace: string;
}

/** ctr's arguments for this containerd and namespace, then args. */
export const ctrArgs = (c: ContainerdTarget, args: string[]) => ['-a', c.address, '-n', c.namespace, ...args];

/** Runs ctr to its end, killed after timeoutMs; never rejects: ok says whether it exited 0. */
export async function ctr(c: ContainerdTarget, args: string[], timeoutMs = 300_000): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  return run('ctr', ctrArgs(c, args), { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }).then(
    (r) => ({ ok: true, stdout: r.stdout, stderr: r.stderr }),
    (e: { stdout?: string; stderr?: string; message: string }) => ({ ok: false, stdout: e.stdout ?? '', stderr: e.stderr?.trim() || e.message }),
  );
}
