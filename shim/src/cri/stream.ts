// The client end of a CRI streaming session (the URL Exec or Attach returns):
// kubelet's remotecommand protocol over a WebSocket, `v4.channel.k8s.io`.
// Each binary message starts with its channel: 0 stdin, 1 stdout, 2 stderr,
// 3 the final status (JSON), 4 terminal resize. v4 has no way to close stdin
// alone: a process that reads stdin to EOF ends only when the session does.
import WebSocket from 'ws';

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const STATUS = 3;
const PROTOCOL = 'v4.channel.k8s.io';

export interface StreamResult {
  stdout: Buffer;
  stderr: Buffer;
  /** From the final status: 0 on success, the process's exit code otherwise. */
  exitCode: number;
  /** The status message when the session failed for another reason than an exit code. */
  failure?: string;
}

interface K8sStatus {
  status?: string;
  message?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}

function exitCodeOf(status: K8sStatus): { exitCode: number; failure?: string } {
  if (status.status === 'Success') return { exitCode: 0 };
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  if (cause?.message !== undefined && /^\d+$/.test(cause.message)) return { exitCode: Number(cause.message) };
  return { exitCode: -1, failure: status.message ?? JSON.stringify(status) };
}

/**
 * Connects to a streaming URL, writes `stdin` (if any) once the session is open, and collects the
 * output until the server ends the session. Rejects after timeoutMs, closing the connection.
 */
export function runStream(url: string, o: { stdin?: Buffer | string; timeoutMs: number }): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws'), [PROTOCOL]);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let status: K8sStatus | undefined;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`CRI stream ${url}: no end within ${o.timeoutMs} ms`));
    }, o.timeoutMs);
    ws.on('open', () => {
      if (o.stdin !== undefined) ws.send(Buffer.concat([Buffer.from([STDIN]), Buffer.from(o.stdin)]));
    });
    ws.on('message', (data: Buffer) => {
      const body = data.subarray(1);
      if (data[0] === STDOUT) out.push(body);
      else if (data[0] === STDERR) err.push(body);
      else if (data[0] === STATUS && body.length > 0) status = JSON.parse(body.toString('utf8')) as K8sStatus;
    });
    ws.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`CRI stream ${url}: ${e.message}`));
    });
    ws.on('close', () => {
      clearTimeout(timer);
      resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(err), ...(status ? exitCodeOf(status) : { exitCode: 0 }) });
    });
  });
}
