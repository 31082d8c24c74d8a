// kata-ts-run: boots a sandbox VM, runs one command in a container from a
// rootfs directory, streams its output and prints where the boot time went.
//   kata-ts-run [--rootfs DIR] [--tty] [--accel auto|kvm|tcg] [--channel auto|vsock|serial] [--debug] -- COMMAND [ARG...]
import { parseArgs } from 'node:util';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createLogger } from '../../../common/log.js';
import type { AccelSetting, ChannelSetting } from '../hypervisor/accel.js';
import { RUNTIME_ROOT } from '../containerd/shim-settings.js';
import { defaultSpec } from '../sandbox/default-spec.js';
import { ensureRunRoot, Sandbox } from '../sandbox/sandbox.js';
import { DEFAULT_SETTINGS, type SandboxSettings } from '../sandbox/settings.js';

const USAGE = 'usage: kata-ts-run [--rootfs DIR] [--tty] [--accel auto|kvm|tcg] [--channel auto|vsock|serial] [--debug] -- COMMAND [ARG...]';

class UsageError extends Error {}

function parseCommandLine() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        rootfs: { type: 'string', default: join(RUNTIME_ROOT, 'busybox-rootfs') },
        kernel: { type: 'string', default: join(RUNTIME_ROOT, 'vmlinux') },
        image: { type: 'string', default: join(RUNTIME_ROOT, 'rootfs.img') },
        accel: { type: 'string', default: 'auto' },
        channel: { type: 'string', default: 'auto' },
        tty: { type: 'boolean', default: false },
        debug: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseCommandLine();
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError('no command given');
  // Before a VM boots for nothing.
  if (!statSync(values.rootfs, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`--rootfs ${values.rootfs} is not a folder`);
  const log = createLogger({ level: values.debug ? 'debug' : 'warn' });
  const settings: SandboxSettings = {
    ...DEFAULT_SETTINGS,
    kernelPath: values.kernel,
    imagePath: values.image,
    accel: values.accel as AccelSetting,
    agentChannel: values.channel as ChannelSetting,
    debug: values.debug,
  };
  await ensureRunRoot(settings);
  const id = `run-${randomBytes(4).toString('hex')}`;
  const t0 = performance.now();
  const sandbox = await Sandbox.start(id, settings, log);
  // Interrupted: still tear the sandbox down, so nothing is left behind.
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => void sandbox.stop().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143)));
  let status = 255;
  try {
    const spec = defaultSpec({ args: positionals, terminal: values.tty });
    await sandbox.createContainer('main', { spec, rootfs: values.rootfs });
    const started = performance.now();
    const { process: proc } = await sandbox.startContainer('main');
    const startedDone = performance.now();
    let firstOutput = 0;
    proc.stdout.once('data', () => (firstOutput = performance.now()));
    proc.stdout.pipe(process.stdout, { end: false });
    proc.stderr.pipe(process.stderr, { end: false });
    // Our reader went away (`| head`): the process gets SIGPIPE, as it would on the host, and the
    // sandbox is still torn down below instead of this process dying on the write error.
    for (const [source, sink] of [[proc.stdout, process.stdout], [proc.stderr, process.stderr]] as const)
      sink.on('error', () => {
        source.unpipe(sink);
        source.resume();
        void proc.signal(13).catch(() => undefined);
      });
    if (process.stdin.isTTY) await proc.closeStdin();
    else void proc.pipeFrom(process.stdin);
    const exit = await proc.wait();
    status = exit.status;
    const t = sandbox.timeline;
    const ms = (x: number) => `${Math.round(x)} ms`;
    const lines = [
      `accel=${t.accel} channel=${t.channel}`,
      ...(t.boot === 'template'
        ? [`qemu spawn → restored        ${ms(t.restoredMs ?? 0)} (from its template)`]
        : [`qemu spawn → kernel start    ${ms(t.kernelStartMs)}`, `           → init            ${ms(t.initMs)}`, `           → agent listening ${ms(t.agentListeningMs)}`]),
      `           → agent answered  ${ms(t.agentAnsweredMs)}`,
      `           → sandbox ready   ${ms(t.sandboxReadyMs)}`,
      `           → container started ${ms(startedDone - sandbox.vm.spawnedAt)} (create+start took ${ms(startedDone - started)})`,
      firstOutput ? `           → first output    ${ms(firstOutput - sandbox.vm.spawnedAt)}` : '           → no output',
      `exit status ${status}; total ${ms(performance.now() - t0)}`,
    ];
    process.stderr.write(`\n[kata-ts] boot phases\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
    await sandbox.removeContainer('main', true);
  } finally {
    await sandbox.stop();
  }
  return status;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`kata-ts-run: ${err.message}${err instanceof UsageError ? `\n${USAGE}` : ''}`);
    process.exit(err instanceof UsageError ? 2 : 125);
  },
);
