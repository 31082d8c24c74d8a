// What the shim leaves in a task's bundle for `delete`. containerd runs
// `delete` without the runtime options, so it cannot know a run root set in
// a configuration file; the shim records it here (runc's shim keeps its
// options.json in the bundle the same way). And once the shim has removed a
// task and everything of it that `delete` would clean, it says so, and the
// wrapper script answers `delete` without starting Node.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const FILE = 'kata-ts.json';
/** Checked by shim/bin/containerd-shim-kata-ts-v2.sh: keep the names in step. */
export const CLEANED_UP_FILE = 'kata-ts.cleaned-up';

interface BundleState {
  runRoot: string;
}

/** Writes a file into the bundle whole or not at all (a temporary name, then rename), so a reader never sees half of it. */
export async function writeBundleFile(bundle: string, name: string, data: string): Promise<void> {
  const tmp = join(bundle, `.${name}`);
  await writeFile(tmp, data);
  await rename(tmp, join(bundle, name));
}

export async function recordRunRoot(bundle: string, runRoot: string): Promise<void> {
  const state: BundleState = { runRoot };
  await writeBundleFile(bundle, FILE, JSON.stringify(state));
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

/** The task was deleted and its rootfs unmounted, and the VM stopped if the task owned it. */
export async function markCleanedUp(bundle: string): Promise<void> {
  await writeFile(join(bundle, CLEANED_UP_FILE), '');
}
