// Gives the vsock agent channel a unix-socket front door, so the gRPC client
// dials one kind of address whatever the channel: each connection to the
// unix socket is spliced to a fresh AF_VSOCK connection to the guest.
import { closeSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NativeAddon } from './native.js';
import { socketFromFd } from './fd-socket.js';

/** One connect's bound, and how long a client waits in all for a guest that is not listening yet. */
const CONNECT_TIMEOUT_MS = 1000;
const DIAL_BUDGET_MS = 20_000;
const RETRY_MS = 10;

/** A connected AF_VSOCK fd. The kernel connects; its result is polled on timers, never waited for. */
async function connectVsock(native: NativeAddon, cid: number, port: number): Promise<number> {
  const fd = native.vsockConnectStart(cid, port);
  const deadline = Date.now() + CONNECT_TIMEOUT_MS;
  try {
    for (let delay = 1; !native.vsockConnectResult(fd); delay = Math.min(delay * 2, 20)) {
      if (Date.now() > deadline) throw new Error(`connect(AF_VSOCK ${cid}:${port}): no answer in ${CONNECT_TIMEOUT_MS} ms`);
      await sleep(delay);
    }
    return fd;
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

export function startVsockProxy(native: NativeAddon, socketPath: string, guestCid: number, port: number): Promise<net.Server> {
  const server = net.createServer((client) => {
    client.pause();
    // A client that goes away while the guest is dialled must not be an unhandled error.
    client.on('error', () => client.destroy());
    void (async () => {
      const giveUpAt = Date.now() + DIAL_BUDGET_MS;
      for (;;) {
        if (client.destroyed) return;
        try {
          const guest = socketFromFd(await connectVsock(native, guestCid, port));
          if (client.destroyed) return guest.destroy();
          client.pipe(guest).pipe(client);
          client.resume();
          const close = () => {
            client.destroy();
            guest.destroy();
          };
          client.once('close', close);
          guest.once('close', close);
          guest.on('error', close);
          return;
        } catch {
          // The guest is not listening yet: keep trying while the client waits.
          if (Date.now() > giveUpAt) return client.destroy();
          await sleep(RETRY_MS);
        }
      }
    })();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve(server));
  });
}
