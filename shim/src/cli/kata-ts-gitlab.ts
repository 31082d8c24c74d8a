// `kata-ts gitlab config|prepare|run|cleanup`: the GitLab Runner custom
// executor driver (see shim/src/gitlab/driver.ts).
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { SHIM_VERSION } from '../containerd/version.js';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../containerd/config.js';
import { defaultShimSettings, SHIPPED_CONFIG_PATH } from '../containerd/shim-settings.js';
import { DEFAULT_CONTAINERD, NETWORK_MODES, type NetworkMode } from '../job/options.js';
import { cleanup, configJson, DriverError, failureCodes, prepare, runStage, type DriverSettings } from '../gitlab/driver.js';

export const GITLAB_USAGE = '  gitlab config|prepare|run SCRIPT STAGE|cleanup                    a GitLab Runner custom executor (kata-ts gitlab --help)';

const DEFAULT_NAMESPACE = 'kata-ts-gitlab';
const DEFAULT_IMAGE = 'docker.io/library/kata-ts-busybox:latest';

const HELP = `usage: kata-ts gitlab STAGE [OPTIONS]
A GitLab Runner custom executor: each job gets its own VM, held by containerd
from prepare to cleanup, and every stage's script runs in it.
  config                   prints the runner's config JSON (builds in /builds, not shared)
  prepare                  boots the job's VM from CUSTOM_ENV_CI_JOB_IMAGE (else --image)
  run SCRIPT STAGE         feeds SCRIPT to the shell in the VM; exits BUILD_FAILURE_EXIT_CODE when
                           it fails, SYSTEM_FAILURE_EXIT_CODE when the VM is gone
  cleanup                  removes the job's VM, whatever happened before
options: --containerd SOCKET (${DEFAULT_CONTAINERD}), --namespace NS (${DEFAULT_NAMESPACE}),
         --image REF (${DEFAULT_IMAGE}), --shell SH (sh),
         --network none|nat (none): nat gives the job outbound connections (get_sources clones
           over it) through user-mode NAT on the host, never to the host's loopback,
         --config FILE (/etc/kata-ts/configuration.toml): its [gitlab] section gives defaults for the others`;

function gitlabNetwork(mode: string): NetworkMode {
  if (!NETWORK_MODES.includes(mode as NetworkMode)) throw new DriverError(`--network ${JSON.stringify(mode)}: the modes are none and nat`);
  return mode as NetworkMode;
}

export async function gitlabCommand(argv: string[]): Promise<number> {
  const codes = failureCodes(process.env);
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        containerd: { type: 'string' },
        namespace: { type: 'string' },
        image: { type: 'string' },
        shell: { type: 'string' },
        network: { type: 'string' },
        config: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`kata-ts gitlab: ${(err as Error).message}\n${HELP}\n`);
    return codes.system;
  }
  const [stage, ...rest] = parsed.positionals;
  if (parsed.values.help || stage === undefined) {
    process.stdout.write(`${HELP}\n`);
    return stage === undefined && !parsed.values.help ? 2 : 0;
  }
  const v = parsed.values;
  try {
    const d = loadConfig(defaultShimSettings(false), v.config, [DEFAULT_CONFIG_PATH, SHIPPED_CONFIG_PATH]).gitlab;
    const s: DriverSettings = {
      containerd: { address: v.containerd ?? d.containerd ?? DEFAULT_CONTAINERD, namespace: v.namespace ?? d.namespace ?? DEFAULT_NAMESPACE },
      defaultImage: v.image ?? d.image ?? DEFAULT_IMAGE,
      shell: v.shell ?? d.shell ?? 'sh',
      network: gitlabNetwork(v.network ?? d.network ?? 'none'),
    };
    switch (stage) {
      case 'config':
        process.stdout.write(`${configJson(SHIM_VERSION.replace(/^kata-ts /, ''), hostname())}\n`);
        return 0;
      case 'prepare':
        await prepare(s, process.env, (line) => void process.stderr.write(`${line}\n`));
        return 0;
      case 'run': {
        const [script, name] = rest;
        if (!script || !name) throw new DriverError('run needs SCRIPT and STAGE');
        const outcome = await runStage(s, process.env, script, name);
        if (outcome === 'system-failure') process.stderr.write(`kata-ts gitlab: the job's VM is gone (stage ${name})\n`);
        return outcome === 'ok' ? 0 : outcome === 'build-failure' ? codes.build : codes.system;
      }
      case 'cleanup':
        await cleanup(s, process.env);
        return 0;
      default:
        throw new DriverError(`unknown stage ${JSON.stringify(stage)}`);
    }
  } catch (err) {
    process.stderr.write(`kata-ts gitlab: ${(err as Error).message}\n`);
    return codes.system;
  }
}
