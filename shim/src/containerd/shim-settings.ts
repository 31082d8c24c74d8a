// The sandbox settings a shim uses. Kernel and image default to the build
// folder of the installation the shim runs from.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SETTINGS, type SandboxSettings } from '../sandbox/settings.js';

export const INSTALL_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

export function defaultShimSettings(debug: boolean): SandboxSettings {
  return {
    ...DEFAULT_SETTINGS,
    kernelPath: join(INSTALL_ROOT, 'build/vmlinux'),
    imagePath: join(INSTALL_ROOT, 'build/rootfs.img'),
    debug,
  };
}
