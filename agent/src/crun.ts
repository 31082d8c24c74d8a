// Command lines for crun, the OCI runtime inside the guest. Pure builders, so
// the exact flags are unit-tested; running them is process.ts's job.

export interface CrunPaths {
  binary: string;
  /** crun's state directory. */
  root: string;
}

export interface RunOptions {
  containerId: string;
  bundle: string;
  pidFile: string;
  logFile: string;
  consoleSocket?: string;
}

export interface ExecOptions {
  containerId: string;
  processFile: string;
  pidFile: string;
  logFile: string;
  consoleSocket?: string;
}

const globalArgs = (paths: CrunPaths, logFile: string) => ['--root', paths.root, `--log=${logFile}`];

/** `crun run` in the foreground: crun waits for the container and exits with its status. */
export function runArgs(paths: CrunPaths, o: RunOptions): string[] {
  return [
    ...globalArgs(paths, o.logFile),
    'run',
    '--bundle',
    o.bundle,
    '--pid-file',
    o.pidFile,
    ...(o.consoleSocket ? ['--console-socket', o.consoleSocket] : []),
    o.containerId,
  ];
}

/** `crun exec` in the foreground with the process read from a file. */
export function execArgs(paths: CrunPaths, o: ExecOptions): string[] {
  return [
    ...globalArgs(paths, o.logFile),
    'exec',
    '--process',
    o.processFile,
    '--pid-file',
    o.pidFile,
    ...(o.consoleSocket ? ['--tty', '--console-socket', o.consoleSocket] : []),
    o.containerId,
  ];
}

export function killArgs(paths: CrunPaths, logFile: string, containerId: string, signal: number, all: boolean): string[] {
  return [...globalArgs(paths, logFile), 'kill', ...(all ? ['--all'] : []), containerId, String(signal)];
}

export function simpleArgs(paths: CrunPaths, logFile: string, verb: 'pause' | 'resume' | 'delete', containerId: string, force = false): string[] {
  return [...globalArgs(paths, logFile), verb, ...(force ? ['--force'] : []), containerId];
}

export function updateArgs(paths: CrunPaths, logFile: string, containerId: string, resourcesFile: string): string[] {
  return [...globalArgs(paths, logFile), 'update', '--resources', resourcesFile, containerId];
}

/** Exit status as a shell reports it: the code, or 128 + signal number. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null, signalNumbers: Record<string, number>): number {
  if (code !== null) return code;
  if (signal !== null) return 128 + (signalNumbers[signal] ?? 0);
  return 255;
}
