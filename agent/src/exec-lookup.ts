// Finds a process's executable inside a container rootfs before crun runs it,
// so a missing command fails at once with a clear error instead of an exit
// status the caller must guess about.
import { lstat, readlink, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { AgentError } from './errors.js';
import { status } from '@grpc/grpc-js';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const MAX_SYMLINKS = 40;

/** Resolves `path` (absolute, inside the container) to a host path under `root`, following symlinks as if `root` were `/`. */
export async function resolveInRoot(root: string, path: string): Promise<string | undefined> {
  let pending = posix.normalize(path).split('/').filter(Boolean);
  let resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    if (part === '.') continue;
    const candidate = posix.join(root, ...resolved, part);
    let info;
    try {
      info = await lstat(candidate);
    } catch {
      return undefined;
    }
    if (info.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) return undefined;
      const target = await readlink(candidate);
      const targetParts = target.split('/').filter(Boolean);
      if (target.startsWith('/')) resolved = [];
      pending = [...targetParts, ...pending];
      continue;
    }
    resolved.push(part);
  }
  return posix.join(root, ...resolved);
}

async function isExecutableFile(hostPath: string): Promise<boolean> {
  try {
    const info = await stat(hostPath);
    return info.isFile() && (info.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function pathFromEnv(env: string[] | undefined): string {
  const entry = (env ?? []).findLast((e) => e.startsWith('PATH='));
  return entry ? entry.slice(5) : DEFAULT_PATH;
}

/**
 * Checks that `command` exists and is executable in the rootfs, the way
 * execvp would look it up. Throws NOT_FOUND or PERMISSION_DENIED-like
 * FAILED_PRECONDITION errors that name the command.
 */
export async function checkExecutable(root: string, command: string, env: string[] | undefined, cwd: string): Promise<void> {
  if (command.includes('/')) {
    const inContainer = command.startsWith('/') ? command : posix.join(cwd, command);
    const hostPath = await resolveInRoot(root, inContainer);
    if (!hostPath) throw new AgentError(status.NOT_FOUND, `executable ${command} not found in the container`);
    if (!(await isExecutableFile(hostPath)))
      throw new AgentError(status.FAILED_PRECONDITION, `${command} in the container is not an executable file`);
    return;
  }
  const searchPath = pathFromEnv(env);
  for (const dir of searchPath.split(':')) {
    if (!dir) continue;
    const hostPath = await resolveInRoot(root, posix.join(dir.startsWith('/') ? dir : posix.join(cwd, dir), command));
    if (hostPath && (await isExecutableFile(hostPath))) return;
  }
  throw new AgentError(status.NOT_FOUND, `executable ${command} not found in $PATH (${searchPath}) of the container`);
}
