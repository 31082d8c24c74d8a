// Gives the vsock agent channel a unix-socket front door, so the gRPC client
// dials one kind of address whatever the channel: each connection to the
// unix socket is spliced to a fresh AF_VSOCK connection to the guest.
import net from 'node:net';
import type { NativeAddon } from './native.js';
import { socketFromFd } from './fd-socket.js';

export function startVsockProxy(native: NativeAddon, socketPath: string, guestCid: number, port: number): Promise<net.Server> {
  const server = net.createServer((client) => {
    client.pause();
    const dial = (attempt: number) => {
      try {
        const fd = native.vsockConnect(guestCid, port, 1000);
        const guest = socketFromFd(fd);
        client.pipe(guest).pipe(client);
        client.resume();
        const close = () => {
          client.destroy();
          guest.destroy();
        };
        client.once('close', close);
        guest.once('close', close);
        guest.on('error', close);
        client.on('error', close);
      } catch {
        // The guest is not listening yet: keep trying while the client waits.
        if (!client.destroyed && attempt < 2000) setTimeout(() => dial(attempt + 1), 10);
        else client.destroy();
      }
    };
    dial(0);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve(server));
  });
}
