// What the shim leaves in a task's bundle for `delete`. containerd runs
// `delete` without the runtime options, so it cannot know a run root set in
// a configuration file; the shim records it here (runc's shim keeps its
// options.json in the bundle the same way).
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const FILE = 'kata-ts.json';

interface BundleState {
  runRoot: string;
}

export async function recordRunRoot(bundle: string, runRoot: string): Promise<void> {
  const state: BundleState = { runRoot };
  const tmp = join(bundle, `.${FILE}`);
  await writeFile(tmp, JSON.stringify(state));
  await rename(tmp, join(bundle, FILE));
}

/** The run root recorded in the bundle, or undefined when the shim never got that far. */
export async function recordedRunRoot(bundle: string): Promise<string | undefined> {
  try {
    const state = JSON.parse(await readFile(join(bundle, FILE), 'utf8')) as Partial<BundleState>;
    return typeof state.runRoot === 'string' && state.runRoot.startsWith('/') ? state.runRoot : undefined;
  } catch {
    return undefined;
  }
}
