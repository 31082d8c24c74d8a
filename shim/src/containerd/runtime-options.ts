// The runtime options containerd passes: to `start` on stdin (protobuf-encoded
// Any) and again in CreateTaskRequest.options. kata-ts understands CRI's and
// `ctr --runtime-config-path`'s runtimeoptions.v1.Options, whose config_path
// names the configuration file.
import { google, runtimeoptions } from '../../../proto/gen/containerd/containerd.js';
import { Code, TtrpcError } from '../ttrpc/status.js';

export const RUNTIME_OPTIONS_URL = 'runtimeoptions.v1.Options';

/** The config_path of runtimeoptions.v1.Options, if given. */
export function runtimeConfigPath(options: google.protobuf.IAny | null | undefined): string | undefined {
  if (!options?.value?.length) return undefined;
  if (options.type_url !== RUNTIME_OPTIONS_URL) throw new TtrpcError(Code.INVALID_ARGUMENT, `runtime options of type ${options.type_url} are not supported; use ${RUNTIME_OPTIONS_URL}`);
  return runtimeoptions.v1.Options.decode(options.value).configPath || undefined;
}

/** The same from the bytes `start` read on its stdin (empty when containerd has no options). */
export function configPathFromStartOptions(bytes: Uint8Array): string | undefined {
  if (bytes.length === 0) return undefined;
  return runtimeConfigPath(google.protobuf.Any.decode(bytes));
}
