// kata-ts: the operator's command. Subcommands:
//   kata-ts cri [--address SOCKET] COMMAND …   drive containerd's CRI plugin as kubelet does (no crictl needed)
//   kata-ts job run [OPTIONS] -- COMMAND …     run a CI job in a throw-away VM
//   kata-ts gitlab config|prepare|run|cleanup  a GitLab Runner custom executor driver
//   kata-ts ps [--json]                        the sandboxes on this host
//   kata-ts logs SANDBOX [--follow]            its shim log and guest console
//   kata-ts exec SANDBOX [-- COMMAND …]        a shell in its guest outside every container (debug console)
//   kata-ts monitor --listen ADDR              every sandbox's metrics over HTTP for Prometheus
//   kata-ts check [--json] [--strict]          can this host run sandboxes, and if not, why
//   kata-ts env [--json]                       the resolved configuration and the versions of what runs
//   kata-ts vm xml|argv [SANDBOX]              a sandbox VM as libvirt domain XML or QEMU argv
import { criCommand, CRI_USAGE } from './kata-ts-cri.js';
import { checkCommand, CHECK_USAGE } from './kata-ts-check.js';
import { envCommand, ENV_USAGE } from './kata-ts-env.js';
import { gitlabCommand, GITLAB_USAGE } from './kata-ts-gitlab.js';
import { jobCommand, JOB_USAGE } from './kata-ts-job.js';
import { monitorCommand, MONITOR_USAGE } from './kata-ts-monitor.js';
import { psCommand, PS_USAGE } from './kata-ts-ps.js';
import { logsCommand, LOGS_USAGE } from './kata-ts-logs.js';
import { execCommand, EXEC_USAGE } from './kata-ts-exec.js';
import { vmCommand, VM_USAGE } from './kata-ts-vm.js';

const USAGE = `usage: kata-ts COMMAND …
commands:
${CRI_USAGE}
${JOB_USAGE}
${GITLAB_USAGE}
${PS_USAGE}
${LOGS_USAGE}
${EXEC_USAGE}
${MONITOR_USAGE}
${CHECK_USAGE}
${ENV_USAGE}
${VM_USAGE}`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'cri':
      return criCommand(rest);
    case 'job':
      return jobCommand(rest);
    case 'gitlab':
      return gitlabCommand(rest);
    case 'ps':
      return psCommand(rest);
    case 'logs':
      return logsCommand(rest);
    case 'exec':
      return execCommand(rest);
    case 'monitor':
      return monitorCommand(rest);
    case 'check':
      return checkCommand(rest);
    case 'env':
      return envCommand(rest);
    case 'vm':
      return vmCommand(rest);
    case undefined:
    case '-h':
    case '--help':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`kata-ts: unknown command ${JSON.stringify(command)}\n${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`kata-ts: ${err.message}\n`);
    process.exit(1);
  },
);
