// containerd-shim-kata-ts-v2: the containerd shim v2 binary of kata-ts.
//   start   print the address of the shim for this task; for a new sandbox,
//           this process then becomes that shim and keeps serving
//   delete  clean up after a task or a dead shim; prints a DeleteResponse
// Each action loads only what it needs: containerd runs `start` and `delete`
// on the path of every `ctr run`, so their start-up time is the shim's overhead.
// containerd runs this through the wrapper script `make install` puts on
// PATH (shim/bin/containerd-shim-kata-ts-v2.sh), which detaches `start`.
import { FlagError, parseFlags } from '../containerd/flags.js';
import { SHIM_VERSION } from '../containerd/version.js';

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.version) {
    process.stdout.write(`containerd-shim-kata-ts-v2 ${SHIM_VERSION}\n`);
    return;
  }
  switch (flags.action) {
    case 'start': {
      const { startCommand } = await import('../containerd/start.js');
      await startCommand(flags);
      return;
    }
    case 'delete': {
      const [{ createLogger }, { deleteCommand }, { DEFAULT_SETTINGS }] = await Promise.all([
        import('../../../common/log.js'),
        import('../containerd/delete.js'),
        import('../sandbox/settings.js'),
      ]);
      const log = createLogger({ level: flags.debug ? 'debug' : 'warn', fields: { id: flags.id } });
      process.stdout.write(await deleteCommand(flags, DEFAULT_SETTINGS.runRoot, log));
      return;
    }
  }
}

main().catch((err: Error) => {
  process.stderr.write(`${err instanceof FlagError ? 'usage: ' : ''}${err.message}\n`);
  process.exit(1);
});
