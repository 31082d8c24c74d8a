// containerd-shim-kata-ts-v2: the containerd shim v2 binary of kata-ts.
//   start   print the address of the shim for this task (spawning one if needed)
//   delete  clean up after a task or a dead shim; prints a DeleteResponse
//   (none)  serve the Task API (how `start` runs the long-lived shim)
import { fileURLToPath } from 'node:url';
import { createLogger } from '../../../common/log.js';
import { deleteCommand } from '../containerd/delete.js';
import { FlagError, parseFlags } from '../containerd/flags.js';
import { serveCommand } from '../containerd/serve.js';
import { defaultShimSettings } from '../containerd/shim-settings.js';
import { startCommand } from '../containerd/start.js';
import { SHIM_VERSION } from '../containerd/task-service.js';

async function main(): Promise<number> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.version) {
    process.stdout.write(`containerd-shim-kata-ts-v2 ${SHIM_VERSION}\n`);
    return 0;
  }
  switch (flags.action) {
    case 'start': {
      // stdout is the address and nothing else: containerd reads all of it.
      process.stdout.write(await startCommand(flags, fileURLToPath(import.meta.url)));
      return 0;
    }
    case 'delete': {
      const log = createLogger({ level: flags.debug ? 'debug' : 'warn', fields: { id: flags.id } });
      const response = await deleteCommand(flags, defaultShimSettings(false).runRoot, log);
      process.stdout.write(response);
      return 0;
    }
    case 'serve':
      await serveCommand(flags);
      return -1; // keeps running
  }
}

main().then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`${err instanceof FlagError ? 'usage: ' : ''}${err.message}\n`);
    process.exit(1);
  },
);
