// Agents that do not speak gRPC at all: one answers every connection with
// bytes that are no HTTP/2, one accepts and never says a word.
import { rm } from 'node:fs/promises';
import net from 'node:net';

export interface RawAgent {
  /** Bytes written to the shim so far. */
  readonly bytesSent: () => number;
  close(): Promise<void>;
}

/** What a confused guest might put on the channel: console noise, then binary junk. */
const JUNK = Buffer.concat([Buffer.from('[    0.000000] Linux version 6.1 (garbage on the agent channel)\r\n'), Buffer.from([0xff, 0x00, 0xfe, 0x13, 0x37, 0x00, 0x00, 0x04])]);

export function startJunkAgent(socketPath: string): Promise<RawAgent> {
  return listenRaw(socketPath, (socket, sent) => {
    socket.write(JUNK, () => sent(JUNK.length));
    // Answer whatever the shim says with more of the same.
    socket.on('data', () => socket.write(JUNK, () => sent(JUNK.length)));
  });
}

export function startSilentAgent(socketPath: string): Promise<RawAgent> {
  return listenRaw(socketPath, (socket) => socket.resume());
}

async function listenRaw(socketPath: string, onConnection: (socket: net.Socket, sent: (n: number) => void) => void): Promise<RawAgent> {
  let bytesSent = 0;
  const sockets = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket, (n) => (bytesSent += n));
  });
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(socketPath, resolve);
  });
  return {
    bytesSent: () => bytesSent,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}
