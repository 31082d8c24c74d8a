// `kata-ts check`: can this host run kata-ts sandboxes, and if not, why?
// Every requirement with a verdict and what to do about it.
import { parseArgs } from 'node:util';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from '../containerd/config.js';
import { defaultShimSettings, RUNTIME_ROOT, SHIPPED_CONFIG_PATH } from '../containerd/shim-settings.js';
import { gatherHostFacts } from '../check/host-facts.js';
import { renderCheck } from '../check/render.js';
import { checkHost, summarise, type Finding } from '../check/verdicts.js';

export const CHECK_USAGE = '  check [--json] [--strict] [--config FILE]                        can this host run sandboxes? exit 0 ready, 1 cannot, 2 degraded (TCG)';

const HELP = `usage: kata-ts check [--json] [--strict] [--config FILE]

Checks every host requirement of kata-ts (KVM, device nodes, QEMU and its
devices, virtiofsd, cgroups, the guest images and their build records,
containerd finding the shim, the shim socket folder, KSM, helper programs)
and says for each: ok, DEGRADED, optional (missing, kata-ts does without) or
FATAL, with what to do.

  --json           the report as JSON
  --strict         a degraded host (TCG, stale images) exits 1 too
  --config FILE    the configuration to check with (default: as the shim finds it:
                   KATA_TS_CONFIG, /etc/kata-ts/configuration.toml, the runtime folder's)

exit status: 0 ready; 1 cannot run sandboxes (or degraded with --strict);
2 runs degraded (TCG software emulation, images that differ from their build)`;

export async function checkCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { json: { type: 'boolean', default: false }, strict: { type: 'boolean', default: false }, config: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } },
    }));
  } catch (err) {
    process.stderr.write(`kata-ts check: ${(err as Error).message}\n${HELP}\n`);
    return 1;
  }
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  let settings = defaultShimSettings(false);
  let configuration: Finding;
  let source = 'defaults';
  try {
    const config = loadConfig(settings, values.config, [DEFAULT_CONFIG_PATH, SHIPPED_CONFIG_PATH]);
    settings = config.settings;
    source = config.source;
    configuration = { id: 'configuration', requirement: 'configuration', verdict: 'ok', reason: source === 'defaults' ? 'no file: every key at its default' : source };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // The shim would refuse every sandbox; the rest is checked with the defaults.
    configuration = { id: 'configuration', requirement: 'configuration', verdict: 'fatal', reason: `${err.message} (the rest is checked with the defaults)` };
    source = `${err.key} (invalid)`;
  }
  const facts = await gatherHostFacts(settings, { runtimeRoot: RUNTIME_ROOT });
  const host = checkHost(facts, settings, values.strict);
  const findings = [configuration, ...host.findings];
  const report = { ...host, ...summarise(findings, values.strict), findings, configuration: source, runtimeRoot: RUNTIME_ROOT, strict: values.strict };
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderCheck(report, values.strict));
  return report.exitCode;
}
