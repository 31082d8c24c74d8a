// kata-ts agent entry point: runs as the child of the guest init, serves the
// Agent gRPC service on the virtio-serial port and/or vsock.
import { readFile } from 'node:fs/promises';
import { setFlagsFromString } from 'node:v8';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { createLogger, parseLogLevel } from '../../common/log.js';
import { loadNative } from '../../native/native.js';
import { AgentService } from '../../proto/gen/agent.js';
import { findSerialPort, listenVsock, serveSerialPort } from './channels.js';
import { DEFAULT_PATHS, Sandbox } from './sandbox.js';
import { createAgentService, uptimeMs } from './service.js';
import { checkVsock } from './vsock-check.js';
import { warmUpTemplate } from './template-warm-up.js';
import { warmUp } from './warm-up.js';

export const SERIAL_PORT_NAME = 'agent.channel.0';
export const VSOCK_PORT = 1024;

/** Reads `kata_ts.<key>=value` options from the kernel command line. */
async function kernelOptions(): Promise<Map<string, string>> {
  const cmdline = await readFile('/proc/cmdline', 'utf8').catch(() => '');
  const out = new Map<string, string>();
  for (const word of cmdline.trim().split(/\s+/)) {
    const m = /^kata_ts\.([a-z_]+)=(.*)$/.exec(word);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

async function main(): Promise<void> {
  const options = await kernelOptions();
  if (options.get('accel') === 'tcg') {
    // Emulated, TurboFan's optimizing compiles, and QEMU translating the code they emit, stalled
    // the agent for 0.5-0.8 s every few execs; without them an exec is steady at about 0.2 s and
    // stdout streams faster. Set here, not on node's command line: any V8 flag there makes V8
    // reject the code cache Node keeps for its built-in modules, which costs the boot about 0.4 s.
    setFlagsFromString('--no-opt');
  }
  const log = createLogger({ level: parseLogLevel(options.get('log'), 'info'), fields: { source: 'agent' } });
  process.on('uncaughtException', (err) => {
    log.error('uncaught exception', { error: err.stack ?? err.message });
    process.exit(70);
  });
  const native = loadNative();
  const sandbox = new Sandbox(DEFAULT_PATHS, native, log);
  const channelSetting = options.get('channel') ?? 'serial';
  let listeningAt = 0;
  const server = new Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  server.addService(
    AgentService,
    createAgentService({
      sandbox,
      native,
      log,
      channel: channelSetting,
      initUptimeMs: Number(process.env.KATA_TS_INIT_UPTIME_MS ?? 0),
      listeningUptimeMs: () => listeningAt,
      onDestroyed: () => {
        log.info('sandbox destroyed; agent exits so the VM powers off');
        server.forceShutdown();
        process.exit(0);
      },
    }),
  );
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const channels = channelSetting.split(',');
  if (channels.includes('vsock')) {
    listenVsock(native, VSOCK_PORT, (socket) => injector.injectConnection(socket));
    log.info('listening on vsock', { port: VSOCK_PORT });
  }
  if (channels.includes('serial')) {
    const device = await waitForSerialPort();
    serveSerialPort(device, (socket) => injector.injectConnection(socket), log);
    log.info('serving the virtio-serial port', { device });
  }
  // A template VM warms its paths before it is saved; the host waits for "agent listening" to save it.
  if (options.get('template') === '1') await warmUpTemplate(native, log);
  listeningAt = await uptimeMs();
  log.info('agent listening', {
    uptimeMs: listeningAt,
    initUptimeMs: Number(process.env.KATA_TS_INIT_UPTIME_MS ?? 0),
    nodeStartupMs: Math.round(mainStartedAt),
    bundleLoadedMs: Math.round(bundleLoadedAt),
    mainMs: Math.round(performance.now()),
  });
}

/** Node time (ms since process start) when this module's code began running, i.e. after the bundle was compiled. */
const bundleLoadedAt = (globalThis as { __kataTsLoadedAt?: number }).__kataTsLoadedAt ?? 0;
const mainStartedAt = performance.now();

async function waitForSerialPort(): Promise<string> {
  for (let i = 0; ; i++) {
    const device = await findSerialPort(SERIAL_PORT_NAME);
    if (device) return device;
    if (i === 500) throw new Error(`virtio-serial port ${SERIAL_PORT_NAME} not found`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// While the image build makes the V8 code cache, the agent only serves itself a few calls (warm-up.ts).
const makingCodeCache = process.env.KATA_TS_MAKE_CODE_CACHE === '1';
const entry = process.argv[2] === 'check-vsock' ? () => checkVsock(Number(process.argv[3] ?? VSOCK_PORT)) : main;
const started = makingCodeCache ? warmUp() : entry();
(globalThis as { __kataTsStarted?: Promise<void> }).__kataTsStarted = started;
started.then(
  () => {
    if (process.argv[2] === 'check-vsock') process.exit(0);
  },
  (err: Error) => {
    process.stderr.write(`kata-ts agent failed: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
