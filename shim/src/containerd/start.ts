// `containerd-shim-kata-ts-v2 … start`: prints the address of the shim that
// serves this task. A container of an existing pod gets its sandbox's shim;
// anything else gets a new shim process, spawned detached and already
// listening when this command prints its address.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { socketPath, toAddress } from './address.js';
import { containerKind, sandboxIdOf } from './annotations.js';
import type { ShimFlags } from './flags.js';

const READY_TIMEOUT_MS = 10_000;

export function connectable(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function writeAddressFile(bundle: string, address: string): Promise<void> {
  // containerd reads this file on restart and does not trim it: no newline.
  const tmp = join(bundle, '.address');
  await writeFile(tmp, address);
  await rename(tmp, join(bundle, 'address'));
}

export async function startCommand(flags: ShimFlags, script: string): Promise<string> {
  const bundle = process.cwd();
  const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { annotations?: Record<string, string> };
  const group = sandboxIdOf(flags.id, spec.annotations);
  const path = socketPath(flags.address, flags.namespace, group);
  const address = toAddress(path);

  if (containerKind(spec.annotations) === 'pod-container' || (existsSync(path) && (await connectable(path)))) {
    await writeAddressFile(bundle, address);
    return address;
  }
  if (existsSync(path)) await unlink(path);

  // The shim mostly waits and copies bytes: V8's lite mode (no optimizing tiers) and a small young
  // generation cut its memory by about 10 MB, and each sandbox has one.
  const args = ['--lite-mode', '--max-semi-space-size=1', script, '-namespace', flags.namespace, '-id', flags.id, '-address', flags.address, '-socket', path, ...(flags.debug ? ['-debug'] : [])];
  // fd 3 carries one line back: "ready", or the reason the shim could not start.
  const child = spawn(process.execPath, args, {
    cwd: bundle,
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: { ...process.env, UV_THREADPOOL_SIZE: '32' },
  });
  const status = await new Promise<string>((resolve) => {
    let text = '';
    const timer = setTimeout(() => resolve('the shim did not start listening within 10 s'), READY_TIMEOUT_MS);
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => (text += chunk));
    pipe.on('end', () => {
      clearTimeout(timer);
      resolve(text.trim() || 'the shim exited before it was ready');
    });
  });
  if (status !== 'ready') {
    child.kill('SIGKILL');
    throw new Error(status);
  }
  child.unref();
  await writeAddressFile(bundle, address);
  return address;
}
