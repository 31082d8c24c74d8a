// An agent that answers every call with one well-formed message of any size,
// speaking just enough gRPC over HTTP/2 itself. The message is streamed from
// one small buffer, so this fake stays small however large the message: what
// the test process's memory does then is the shim's doing.
import http2 from 'node:http2';
import { rm } from 'node:fs/promises';
import { unknownFieldHeader } from './unknown-field.js';

export interface LargeReplyAgent {
  /** Message bytes the shim's side accepted before the call ended. */
  readonly bytesSent: () => number;
  close(): Promise<void>;
}

const CHUNK = Buffer.alloc(1024 * 1024);

export async function startLargeReplyAgent(socketPath: string, payloadBytes: number): Promise<LargeReplyAgent> {
  let bytesSent = 0;
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
    s.on('error', () => undefined);
  });
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    const header = unknownFieldHeader(payloadBytes);
    const frame = Buffer.alloc(5);
    frame.writeUInt32BE(header.length + payloadBytes, 1);
    stream.write(Buffer.concat([frame, header]));
    let left = payloadBytes;
    const pump = () => {
      while (left > 0 && !stream.destroyed) {
        const piece = CHUNK.subarray(0, Math.min(left, CHUNK.length));
        left -= piece.length;
        const more = stream.write(piece, (err) => {
          if (!err) bytesSent += piece.length;
        });
        if (!more) return void stream.once('drain', pump);
      }
      if (left === 0 && !stream.destroyed) stream.end();
    };
    pump();
  });
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  return {
    bytesSent: () => bytesSent,
    close: async () => {
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
