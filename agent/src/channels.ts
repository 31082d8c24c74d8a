// The agent channel: where host connections come from. Each connection is a
// duplex stream handed to the gRPC server.
import { readdir, readFile } from 'node:fs/promises';
import { constants, openSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from '../../common/log.js';
import type { NativeAddon } from '../../native/native.js';
import { pipeWrap, socketFromFd } from '../../native/fd-socket.js';

export type ConnectionHandler = (socket: net.Socket) => void;

interface PipeServerHandle {
  open(fd: number): number;
  listen(backlog: number): number;
  onconnection: ((status: number, client?: unknown) => void) | null;
  close(): void;
}

/** Finds a virtio-serial port by its name; the vportNpM device number depends on device order. */
export async function findSerialPort(name: string, sysDir = '/sys/class/virtio-ports'): Promise<string | undefined> {
  const ports = await readdir(sysDir).catch(() => [] as string[]);
  for (const port of ports) {
    const portName = (await readFile(`${sysDir}/${port}/name`, 'utf8').catch(() => '')).trim();
    if (portName === name) return `/dev/${port}`;
  }
  return undefined;
}

/**
 * Serves the virtio-serial port: one host connection at a time. Reads return
 * EOF while no host is connected, so after each EOF the port is reopened.
 */
export function serveSerialPort(device: string, onConnection: ConnectionHandler, log: Logger): void {
  const RETRY_MS = 20;
  const openOnce = () => {
    let fd: number;
    try {
      // A raw fd (not a FileHandle): the libuv handle below owns and closes it.
      fd = openSync(device, constants.O_RDWR | constants.O_NONBLOCK);
    } catch (err) {
      log.error('cannot open the agent port', { device, error: (err as Error).message });
      setTimeout(openOnce, 1000);
      return;
    }
    const socket = socketFromFd(fd);
    const opened = Date.now();
    socket.once('close', () => {
      // EOF right after opening means no host is connected yet: wait a little before trying again.
      setTimeout(openOnce, Date.now() - opened < RETRY_MS ? RETRY_MS : 0);
    });
    socket.on('error', (err) => log.debug('agent port error', { error: err.message }));
    onConnection(socket);
  };
  openOnce();
}

/** Listens on AF_VSOCK; every accepted connection is a net.Socket. */
export function listenVsock(native: NativeAddon, port: number, onConnection: ConnectionHandler): () => void {
  const fd = native.vsockBind(port);
  const handle = new pipeWrap.Pipe(pipeWrap.constants.SERVER) as unknown as PipeServerHandle;
  let rc = handle.open(fd);
  if (rc === 0) rc = handle.listen(16);
  if (rc !== 0) throw new Error(`cannot listen on vsock port ${port} (libuv error ${rc})`);
  handle.onconnection = (status, client) => {
    if (status !== 0 || !client) return;
    onConnection(new net.Socket({ handle: client, readable: true, writable: true } as net.SocketConstructorOpts));
  };
  return () => handle.close();
}
