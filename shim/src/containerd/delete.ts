// `containerd-shim-kata-ts-v2 … delete`: run by containerd after every task
// deletion and when a shim died. Unmounts the bundle's rootfs; when the
// sandbox's shim is gone, also kills its VM and removes its state. A pod
// whose shim still serves other containers is left alone.
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../../common/log.js';
import { containerd } from '../../../proto/gen/containerd/containerd.js';
import { cleanupDeadSandbox } from '../sandbox/cleanup.js';
import { recordedRunRoot } from './bundle-state.js';
import { socketPath } from './address.js';
import { sandboxIdOf } from './annotations.js';
import { sandboxNameOnHost } from './ids.js';
import { timestamp } from './events.js';
import type { ShimFlags } from './flags.js';
import { unmountRootfs } from './rootfs.js';
import { connectable } from './start.js';

/** defaultRunRoot is used only when the shim never recorded the run root of its sandbox in the bundle. */
export async function deleteCommand(flags: ShimFlags, defaultRunRoot: string, log: Logger): Promise<Uint8Array> {
  const bundle = flags.bundle || process.cwd();
  const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8').catch(() => '{}')) as {
    annotations?: Record<string, string>;
    root?: { path?: string };
  };
  const rootPath = spec.root?.path ?? 'rootfs';
  await unmountRootfs(rootPath.startsWith('/') ? rootPath : join(bundle, rootPath));
  const group = sandboxIdOf(flags.id, spec.annotations);
  const path = socketPath(flags.address, flags.namespace, group);
  if (!(await connectable(path))) {
    await cleanupDeadSandbox((await recordedRunRoot(bundle)) ?? defaultRunRoot, sandboxNameOnHost(flags.namespace, group), log);
    await unlink(path).catch(() => undefined);
  }
  return containerd.task.v2.DeleteResponse.encode({ pid: 0, exitStatus: 137, exitedAt: timestamp(new Date()) }).finish();
}
