// The agent serving calls to itself over a unix socket: at image build, a few
// calls while the V8 code cache is made, so the gRPC server and client paths
// are compiled and land in the cache; and the template VM's warm-up
// (template-warm-up.ts) over the same self-serving service.
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, Server, ServerCredentials } from '@grpc/grpc-js';
import { createLogger, type Logger } from '../../common/log.js';
import type { NativeAddon } from '../../native/native.js';
import { AgentClient, AgentService } from '../../proto/gen/agent.js';
import { DEFAULT_PATHS, Sandbox } from './sandbox.js';
import { createAgentService } from './service.js';

/** The agent's service for `sandbox`, served on a unix socket at socketPath, and a client of it. */
export async function serveItself(sandbox: Sandbox, native: NativeAddon, log: Logger, socketPath: string): Promise<{ client: AgentClient; close: () => void }> {
  const server = new Server();
  server.addService(
    AgentService,
    createAgentService({ sandbox, native, log, channel: 'warm-up', initUptimeMs: 0, listeningUptimeMs: () => 0, onDestroyed: () => undefined }),
  );
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const listener = net.createServer((socket) => injector.injectConnection(socket));
  await new Promise<void>((resolve) => listener.listen(socketPath, resolve));
  const client = new AgentClient(`unix://${socketPath}`, credentials.createInsecure());
  return {
    client,
    close: () => {
      client.close();
      server.forceShutdown();
      listener.close();
    },
  };
}

export async function warmUp(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'kata-ts-warm-up-'));
  const log = createLogger({ level: 'error' });
  const native = {} as NativeAddon;
  const { client, close } = await serveItself(new Sandbox(DEFAULT_PATHS, native, log), native, log, join(dir, 'agent.sock'));
  const call = <T>(fn: (cb: (err: Error | null, res: T) => void) => void) => new Promise<T | Error>((resolve) => fn((err, res) => resolve(err ?? res)));
  try {
    for (let i = 0; i < 3; i++) {
      await call((cb) => client.check({}, new Metadata(), {}, cb));
      await call((cb) => client.getGuestDetails({}, new Metadata(), {}, cb));
      // An error path too: no sandbox yet.
      await call((cb) => client.waitProcess({ containerId: 'x', execId: '' }, new Metadata(), {}, cb));
    }
  } finally {
    close();
    await rm(dir, { recursive: true, force: true });
  }
}
