// The sandbox settings a shim uses. Kernel and image default to the build
// folder of the installation the shim runs from.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SETTINGS, type SandboxSettings } from '../sandbox/settings.js';

/**
 * The checkout the shim runs from: the nearest folder above this module with a package.json.
 * The module runs from dist/ and, bundled, from build/shim/ (CommonJS, where import.meta is empty).
 */
function findInstallRoot(): string {
  const self = typeof __filename === 'string' ? __filename : fileURLToPath(import.meta.url);
  for (let dir = dirname(self); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`kata-ts: no package.json above ${self}; is this a kata-ts checkout?`);
  }
}

export const INSTALL_ROOT = findInstallRoot();

export function defaultShimSettings(debug: boolean): SandboxSettings {
  return {
    ...DEFAULT_SETTINGS,
    kernelPath: join(INSTALL_ROOT, 'build/vmlinux'),
    imagePath: join(INSTALL_ROOT, 'build/rootfs.img'),
    debug,
  };
}
