// Finding a program the way a spawn by bare name would: the first executable
// file of that name in the folders of a search path.
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** The folders of a PATH-style string, empty entries left out. */
export function pathDirs(envPath: string | undefined = process.env.PATH): string[] {
  return (envPath ?? '').split(delimiter).filter(Boolean);
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Where `name` is in `dirs` (this process's PATH by default); undefined when nowhere. */
export function findExecutable(name: string, dirs: string[] = pathDirs()): string | undefined {
  return dirs.map((d) => join(d, name)).find(isExecutableFile);
}
