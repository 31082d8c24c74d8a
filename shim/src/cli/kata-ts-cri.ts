// `kata-ts cri`: a small CRI front for walking a pod through containerd as
// kubelet would, where crictl is not at hand. Pod and container configs are
// JSON files in CRI's own shape (runtime.v1 PodSandboxConfig / ContainerConfig,
// camelCase field names, enums by name).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CriClient, type ContainerConfig, type PodSandboxConfig } from '../cri/client.js';
import { runStream } from '../cri/stream.js';

const DEFAULT_ADDRESS = '/run/containerd/containerd.sock';

export const CRI_USAGE = `  cri [--address SOCKET] runp [--runtime HANDLER] POD.json        run a pod sandbox; prints its id
  cri [--address SOCKET] create POD_ID CONTAINER.json POD.json      create a container in it; prints its id
  cri [--address SOCKET] start|stop|rm ID                          start, stop (--timeout S, default 10) or remove a container
  cri [--address SOCKET] exec [-i] ID -- CMD…                       run CMD in the container; -i passes stdin (streaming)
  cri [--address SOCKET] pods | ps [POD_ID] | stats [POD_ID]       list pods, containers, container stats (JSON)
  cri [--address SOCKET] inspectp POD_ID | inspect ID               the status of a pod or container (JSON)
  cri [--address SOCKET] stopp|rmp POD_ID                           stop or remove a pod and everything in it
  (SOCKET: containerd's, ${DEFAULT_ADDRESS} by default)`;

class UsageError extends Error {}

const readJson = <T>(file: string): T => {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (err) {
    throw new UsageError(`${file}: ${(err as Error).message}`);
  }
};

const print = (value: unknown) => process.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value, null, 2)}\n`);

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Runs one CRI command; resolves with the process's exit code. */
export async function criCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        address: { type: 'string', default: DEFAULT_ADDRESS },
        runtime: { type: 'string', default: 'kata-ts' },
        timeout: { type: 'string', default: '10' },
        interactive: { type: 'boolean', short: 'i', default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`kata-ts cri: ${(err as Error).message}\n${CRI_USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...args] = positionals;
  const need = (n: number, what: string) => {
    if (args.length < n) throw new UsageError(`${command} needs ${what}`);
  };
  const cri = CriClient.connect(values.address);
  try {
    switch (command) {
      case 'runp':
        need(1, 'POD.json');
        print(await cri.runPodSandbox(readJson<PodSandboxConfig>(args[0]!), values.runtime));
        return 0;
      case 'create':
        need(3, 'POD_ID CONTAINER.json POD.json');
        print(await cri.createContainer(args[0]!, readJson<ContainerConfig>(args[1]!), readJson<PodSandboxConfig>(args[2]!)));
        return 0;
      case 'start':
        need(1, 'a container id');
        await cri.startContainer(args[0]!);
        return 0;
      case 'stop':
        need(1, 'a container id');
        await cri.stopContainer(args[0]!, Number(values.timeout));
        return 0;
      case 'rm':
        need(1, 'a container id');
        await cri.removeContainer(args[0]!);
        return 0;
      case 'exec': {
        need(2, 'a container id and a command');
        const [id, ...cmd] = args;
        if (!values.interactive) {
          const r = await cri.execSync(id!, cmd, 3600);
          process.stdout.write(r.stdout);
          process.stderr.write(r.stderr);
          return r.exitCode;
        }
        const url = await cri.exec({ containerId: id!, cmd, stdin: true });
        const r = await runStream(url, { stdin: await readStdin(), timeoutMs: 3_600_000 });
        process.stdout.write(r.stdout);
        process.stderr.write(r.stderr);
        if (r.failure) process.stderr.write(`kata-ts cri: ${r.failure}\n`);
        return r.exitCode < 0 ? 1 : r.exitCode;
      }
      case 'pods':
        print(await cri.listPodSandbox());
        return 0;
      case 'ps':
        print(await cri.listContainers(args[0]));
        return 0;
      case 'stats':
        print(await cri.listContainerStats(args[0]));
        return 0;
      case 'inspectp':
        need(1, 'a pod id');
        print(await cri.podSandboxStatus(args[0]!, true));
        return 0;
      case 'inspect':
        need(1, 'a container id');
        print(await cri.containerStatus(args[0]!));
        return 0;
      case 'stopp':
        need(1, 'a pod id');
        await cri.stopPodSandbox(args[0]!);
        return 0;
      case 'rmp':
        need(1, 'a pod id');
        await cri.removePodSandbox(args[0]!);
        return 0;
      default:
        throw new UsageError(command ? `unknown cri command ${JSON.stringify(command)}` : 'no cri command given');
    }
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`kata-ts cri: ${err.message}\n${CRI_USAGE}\n`);
    return 2;
  } finally {
    cri.close();
  }
}
