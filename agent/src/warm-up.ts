// A build-time training run: while the image build makes the V8 code cache,
// the agent serves a few calls to itself over a unix socket, so the code of
// the gRPC server and client paths is compiled and lands in the cache.
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, Server, ServerCredentials } from '@grpc/grpc-js';
import { createLogger } from '../../common/log.js';
import type { NativeAddon } from '../../native/native.js';
import { AgentClient, AgentService } from '../../proto/gen/agent.js';
import { DEFAULT_PATHS, Sandbox } from './sandbox.js';
import { createAgentService } from './service.js';

export async function warmUp(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'kata-ts-warm-up-'));
  const log = createLogger({ level: 'error' });
  const server = new Server();
  server.addService(
    AgentService,
    createAgentService({
      sandbox: new Sandbox(DEFAULT_PATHS, {} as NativeAddon, log),
      native: {} as NativeAddon,
      log,
      channel: 'warm-up',
      initUptimeMs: 0,
      listeningUptimeMs: () => 0,
      onDestroyed: () => undefined,
    }),
  );
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const listener = net.createServer((socket) => injector.injectConnection(socket));
  const path = join(dir, 'agent.sock');
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  const client = new AgentClient(`unix://${path}`, credentials.createInsecure());
  const call = <T>(fn: (cb: (err: Error | null, res: T) => void) => void) => new Promise<T | Error>((resolve) => fn((err, res) => resolve(err ?? res)));
  try {
    for (let i = 0; i < 3; i++) {
      await call((cb) => client.check({}, new Metadata(), {}, cb));
      await call((cb) => client.getGuestDetails({}, new Metadata(), {}, cb));
      // An error path too: no sandbox yet.
      await call((cb) => client.waitProcess({ containerId: 'x', execId: '' }, new Metadata(), {}, cb));
    }
  } finally {
    client.close();
    server.forceShutdown();
    listener.close();
    await rm(dir, { recursive: true, force: true });
  }
}
