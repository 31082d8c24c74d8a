// Wraps a stream-like file descriptor (pty master, virtio-serial port, vsock
// socket) as a net.Socket. net.Socket({fd}) refuses fds libuv cannot classify;
// a libuv pipe handle reads and writes any of them.
import net from 'node:net';

interface PipeWrapBinding {
  Pipe: new (type: number) => { open(fd: number): number };
  constants: { SOCKET: number; SERVER: number };
}

export const pipeWrap = (process as unknown as { binding(name: string): PipeWrapBinding }).binding('pipe_wrap');

export function socketFromFd(fd: number): net.Socket {
  const handle = new pipeWrap.Pipe(pipeWrap.constants.SOCKET);
  const rc = handle.open(fd);
  if (rc !== 0) throw new Error(`cannot wrap fd ${fd} as a stream (libuv error ${rc})`);
  return new net.Socket({ handle, readable: true, writable: true } as net.SocketConstructorOpts);
}
