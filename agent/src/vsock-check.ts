// `agent.cjs check-vsock PORT`: a client that calls the agent over vsock
// loopback inside the guest (CID 1), to prove the vsock listener works where
// the host has no vhost-vsock. Prints the guest details as JSON.
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { loadNative } from '../../native/native.js';
import { startVsockProxy } from '../../native/vsock-proxy.js';
import { AgentClient, type GuestDetails } from '../../proto/gen/agent.js';

const VMADDR_CID_LOCAL = 1;

export async function checkVsock(port: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vsock-check-'));
  const socketPath = join(dir, 'agent.sock');
  const proxy = await startVsockProxy(loadNative(), socketPath, VMADDR_CID_LOCAL, port);
  const client = new AgentClient(`unix://${socketPath}`, credentials.createInsecure());
  try {
    const details = await new Promise<GuestDetails>((resolve, reject) =>
      client.getGuestDetails({}, new Metadata(), { deadline: Date.now() + 20_000 }, (err: ServiceError | null, res: GuestDetails) =>
        err ? reject(err) : resolve(res),
      ),
    );
    process.stdout.write(JSON.stringify(details) + '\n');
  } finally {
    client.close();
    proxy.close();
    await rm(dir, { recursive: true, force: true });
  }
}
