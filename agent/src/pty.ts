// Receives the pty master crun creates for a terminal process (--console-socket)
// and wraps it as a Node stream.
import net from 'node:net';
import { rm } from 'node:fs/promises';
import type { NativeAddon } from '../../native/native.js';
export { socketFromFd } from '../../native/fd-socket.js';

export interface ConsoleSocket {
  path: string;
  /** Resolves with the pty master fd crun sent. */
  master: Promise<number>;
  close(): Promise<void>;
}

export async function listenConsoleSocket(native: NativeAddon, path: string): Promise<ConsoleSocket> {
  let resolveMaster!: (fd: number) => void;
  let rejectMaster!: (err: Error) => void;
  const master = new Promise<number>((resolve, reject) => {
    resolveMaster = resolve;
    rejectMaster = reject;
  });
  master.catch(() => undefined);
  const server = net.createServer({ pauseOnConnect: true }, (conn) => {
    try {
      const fd = (conn as unknown as { _handle: { fd: number } })._handle.fd;
      resolveMaster(native.receiveFd(fd, 5000));
    } catch (err) {
      rejectMaster(err as Error);
    } finally {
      conn.destroy();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, resolve);
  });
  return {
    path,
    master,
    close: async () => {
      rejectMaster(new Error('console socket closed before crun sent a terminal'));
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(path, { force: true });
    },
  };
}
