// containerd-shim-kata-ts-v2: the containerd shim v2 binary of kata-ts.
//   start   print the address of the shim for this task (spawning one if needed)
//   delete  clean up after a task or a dead shim; prints a DeleteResponse
//   (none)  serve the Task API (how `start` runs the long-lived shim)
// Each action loads only what it needs: containerd runs `start` and `delete`
// on the path of every `ctr run`, so their start-up time is the shim's overhead.
import { fileURLToPath } from 'node:url';
import { FlagError, parseFlags } from '../containerd/flags.js';
import { SHIM_VERSION } from '../containerd/version.js';

async function main(): Promise<number> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.version) {
    process.stdout.write(`containerd-shim-kata-ts-v2 ${SHIM_VERSION}\n`);
    return 0;
  }
  switch (flags.action) {
    case 'start': {
      const { startCommand } = await import('../containerd/start.js');
      // stdout is the address and nothing else: containerd reads all of it.
      process.stdout.write(await startCommand(flags, fileURLToPath(import.meta.url)));
      return 0;
    }
    case 'delete': {
      const [{ createLogger }, { deleteCommand }, { DEFAULT_SETTINGS }] = await Promise.all([
        import('../../../common/log.js'),
        import('../containerd/delete.js'),
        import('../sandbox/settings.js'),
      ]);
      const log = createLogger({ level: flags.debug ? 'debug' : 'warn', fields: { id: flags.id } });
      process.stdout.write(await deleteCommand(flags, DEFAULT_SETTINGS.runRoot, log));
      return 0;
    }
    case 'serve': {
      const { serveCommand } = await import('../containerd/serve.js');
      await serveCommand(flags);
      return -1; // keeps running
    }
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
