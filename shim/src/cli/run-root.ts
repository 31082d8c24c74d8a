// The run root the shims of this host use, as their configuration sets it:
// where `kata-ts ps` and `kata-ts monitor` look for sandboxes.
import { DEFAULT_CONFIG_PATH, loadConfig } from '../containerd/config.js';
import { defaultShimSettings, SHIPPED_CONFIG_PATH } from '../containerd/shim-settings.js';

export function configuredRunRoot(): string {
  return loadConfig(defaultShimSettings(false), undefined, [DEFAULT_CONFIG_PATH, SHIPPED_CONFIG_PATH]).settings.runRoot;
}
