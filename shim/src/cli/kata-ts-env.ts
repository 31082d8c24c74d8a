// `kata-ts env`: the configuration a sandbox would start with, every key with
// where its value came from, and the versions of everything it runs.
import { parseArgs } from 'node:util';
import { ANNOTATION_PREFIX, ConfigError, DEFAULT_CONFIG_PATH, loadConfig, resolvedKeys } from '../containerd/config.js';
import { defaultShimSettings, RUNTIME_ROOT, SHIPPED_CONFIG_PATH } from '../containerd/shim-settings.js';
import { renderEnv } from '../check/render.js';
import { gatherVersions } from '../check/versions.js';

export const ENV_USAGE = '  env [--json] [--config FILE]                                     the resolved configuration (each value\'s origin) and versions';

const HELP = `usage: kata-ts env [--json] [--config FILE]

Prints the configuration the shim would use, every key with its value and
where it came from (default, or the file), marks the keys that a sandbox's
${ANNOTATION_PREFIX}<key> annotations may override (runtime.enable_annotations),
and the versions of kata-ts, Node, QEMU, virtiofsd, containerd, slirp4netns and
the guest's kernel, crun and Node.

  --json           as JSON
  --config FILE    the configuration file (default: as the shim finds it:
                   KATA_TS_CONFIG, /etc/kata-ts/configuration.toml, the runtime folder's)`;

export async function envCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false }, config: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } } }));
  } catch (err) {
    process.stderr.write(`kata-ts env: ${(err as Error).message}\n${HELP}\n`);
    return 1;
  }
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  let config;
  try {
    config = loadConfig(defaultShimSettings(false), values.config, [DEFAULT_CONFIG_PATH, SHIPPED_CONFIG_PATH]);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`kata-ts env: ${err.message}\n`);
    return 1;
  }
  const keys = resolvedKeys(config);
  const versions = await gatherVersions(config.settings);
  if (values.json) {
    const annotations = { prefix: ANNOTATION_PREFIX, enabled: config.enabledAnnotations };
    process.stdout.write(`${JSON.stringify({ configuration: config.source, runtimeRoot: RUNTIME_ROOT, keys, annotations, versions }, null, 2)}\n`);
  } else process.stdout.write(renderEnv(config.source, keys, versions, RUNTIME_ROOT));
  return 0;
}
