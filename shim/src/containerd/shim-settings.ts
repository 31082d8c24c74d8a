// The sandbox settings a shim uses. Kernel and image default to the runtime
// folder the shim runs from.
//
// A runtime folder holds everything a shim needs, laid out the same way in a
// checkout (its build/ folder) and in an installation (`make install`, by
// default /opt/kata-ts):
//   bin/containerd-shim-kata-ts-v2   what containerd runs
//   shim/                            the shim bundle, its loader and the native addon
//   vmlinux, rootfs.img              the guest kernel and rootfs image
//   configuration.toml               the default configuration
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SETTINGS, type SandboxSettings } from '../sandbox/settings.js';

/**
 * The runtime folder. Bundled (CommonJS, <runtime>/shim/shim.cjs), it is the folder above the
 * bundle's; run from a checkout's sources or dist/ (ES modules), it is the checkout's build/.
 */
function findRuntimeRoot(): string {
  // (vitest defines __filename for the .ts sources too)
  if (typeof __filename === 'string' && __filename.endsWith('.cjs')) return dirname(dirname(__filename));
  const self = fileURLToPath(import.meta.url);
  for (let dir = dirname(self); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'build');
    if (dirname(dir) === dir) throw new Error(`kata-ts: no package.json above ${self}; is this a kata-ts checkout?`);
  }
}

export const RUNTIME_ROOT = findRuntimeRoot();

/** The configuration the runtime folder ships, read when /etc/kata-ts has none. */
export const SHIPPED_CONFIG_PATH = join(RUNTIME_ROOT, 'configuration.toml');

export function defaultShimSettings(debug: boolean): SandboxSettings {
  return {
    ...DEFAULT_SETTINGS,
    kernelPath: join(RUNTIME_ROOT, 'vmlinux'),
    imagePath: join(RUNTIME_ROOT, 'rootfs.img'),
    debug,
  };
}
