// The QMP client against a scripted QEMU: a hung or hostile peer fails the
// calls on that connection, never the process.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES, QmpClient, QmpError } from '../../shim/src/hypervisor/qmp.js';

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}\n';
const dirs: string[] = [];
const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A QMP peer: greets, accepts qmp_capabilities, and hands every later command to `answer`. */
async function fakeQemu(answer: (socket: net.Socket, cmd: { execute: string; id: string }) => void): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'kata-ts-qmp-'));
  dirs.push(dir);
  const path = join(dir, 'qmp.sock');
  const server = net.createServer((socket) => {
    socket.write(GREETING);
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const cmd = JSON.parse(buf.slice(0, nl)) as { execute: string; id: string };
        buf = buf.slice(nl + 1);
        if (cmd.execute === 'qmp_capabilities') socket.write(`{"return": {}, "id": "${cmd.id}"}\n`);
        else answer(socket, cmd);
      }
    });
    socket.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(path, r));
  return path;
}

describe('QmpClient', () => {
  it('matches answers and errors to their commands', async () => {
    const qmp = await QmpClient.connect(
      await fakeQemu((s, cmd) =>
        s.write(cmd.execute === 'query-status' ? `{"return": {"status": "running"}, "id": "${cmd.id}"}\n` : `{"error": {"class": "CommandNotFound", "desc": "nope"}, "id": "${cmd.id}"}\n`),
      ),
    );
    expect(await qmp.execute('query-status')).toEqual({ status: 'running' });
    await expect(qmp.execute('bogus')).rejects.toBeInstanceOf(QmpError);
    qmp.close();
  });

  it('fails a command a wedged QEMU never answers, within its deadline', async () => {
    const qmp = await QmpClient.connect(await fakeQemu(() => undefined));
    const t0 = Date.now();
    await expect(qmp.execute('quit', undefined, 200)).rejects.toThrow(/quit: no answer within 200 ms/);
    expect(Date.now() - t0).toBeLessThan(2000);
    qmp.close();
  });

  it('ends the connection on a line that is not JSON, failing what is pending instead of throwing', async () => {
    const qmp = await QmpClient.connect(await fakeQemu((s) => s.write('{this is not json\n')));
    await expect(qmp.execute('query-status')).rejects.toThrow(/not JSON/);
    await expect(qmp.execute('query-status')).rejects.toThrow(/connection closed/);
  });

  it('ends the connection on a line longer than the bound', async () => {
    const qmp = await QmpClient.connect(await fakeQemu((s) => s.write('x'.repeat(MAX_LINE_BYTES + 10))));
    await expect(qmp.execute('query-status')).rejects.toThrow(/more than 1048576 bytes/);
  });

  it('refuses a peer that does not greet as QMP', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kata-ts-qmp-'));
    dirs.push(dir);
    const path = join(dir, 'qmp.sock');
    const server = net.createServer((s) => s.write('[1,2,3]\n'));
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    await expect(QmpClient.connect(path)).rejects.toThrow(/not an object/);
  });
});
