// kata-ts: the operator's command. Subcommands:
//   kata-ts cri [--address SOCKET] COMMAND …   drive containerd's CRI plugin as kubelet does (no crictl needed)
//   kata-ts job run [OPTIONS] -- COMMAND …     run a CI job in a throw-away VM
//   kata-ts gitlab config|prepare|run|cleanup  a GitLab Runner custom executor driver
import { criCommand, CRI_USAGE } from './kata-ts-cri.js';
import { gitlabCommand, GITLAB_USAGE } from './kata-ts-gitlab.js';
import { jobCommand, JOB_USAGE } from './kata-ts-job.js';

const USAGE = `usage: kata-ts COMMAND …
commands:
${CRI_USAGE}
${JOB_USAGE}
${GITLAB_USAGE}`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'cri':
      return criCommand(rest);
    case 'job':
      return jobCommand(rest);
    case 'gitlab':
      return gitlabCommand(rest);
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
