// Where a sandbox keeps its files; shared by the sandbox and by the cleanup
// after a dead shim, which must not load the whole sandbox to find them.
import { createHash } from 'node:crypto';
import { join } from 'node:path';

/** A short, socket-path-safe directory name for an id. */
function dirName(id: string): string {
  return id.length <= 40 ? id : createHash('sha256').update(id).digest('hex').slice(0, 40);
}

/** Where a sandbox keeps its VM files and its shared directory. */
export function sandboxDirs(runRoot: string, id: string): { vmDir: string; sharedDir: string } {
  return { vmDir: join(runRoot, 'vm', dirName(id)), sharedDir: join(runRoot, 'shared', dirName(id)) };
}
