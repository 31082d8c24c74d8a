// The e2e harness proven with runc (io.containerd.runc.v2): a private containerd,
// images imported from our tarballs, the real ctr. The kata-ts tests reuse all of it.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUSYBOX_IMAGE,
  BUSYBOX_IMAGE_TAR,
  BUSYBOX_USER_IMAGE,
  BUSYBOX_USER_IMAGE_TAR,
  mountsUnder,
  PrivateContainerd,
} from '../helpers/containerd.js';

const RUNC = 'io.containerd.runc.v2';
let seq = 0;
// runc's state (/run/containerd/runc/<ns>/<id>) and cgroups are shared by every
// containerd on the host: ids must not collide with anyone else's.
const newId = () => `rb-${process.pid}-${++seq}`;

describe('runc baseline through a private containerd', () => {
  let ctrd: PrivateContainerd;

  beforeAll(async () => {
    ctrd = await PrivateContainerd.start();
    await ctrd.importImage(BUSYBOX_IMAGE_TAR);
    await ctrd.importImage(BUSYBOX_USER_IMAGE_TAR);
  });
  afterAll(async () => ctrd?.stop());

  const run = (image: string, ...cmd: string[]) => ctrd.ctr(['run', '--rm', '--runtime', RUNC, image, newId(), ...cmd]);

  it('lists both imported images', async () => {
    const r = await ctrd.ctr(['image', 'ls', '-q']);
    expect(r.stdout.toString().split('\n')).toEqual(expect.arrayContaining([BUSYBOX_IMAGE, BUSYBOX_USER_IMAGE]));
  });

  it('runs echo and prints its output', async () => {
    const r = await run(BUSYBOX_IMAGE, 'echo', 'hello');
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout.toString()).toBe('hello\n');
  });

  it("passes the container's exit code through as ctr's", async () => {
    const r = await run(BUSYBOX_IMAGE, 'sh', '-c', 'exit 42');
    expect(r.code).toBe(42);
  });

  it('feeds stdin to the container', async () => {
    // `read`, not `cat`: ctr 1.6 forwards stdin EOF only if it comes after the task
    // exists, and short input reaches EOF before that, so `cat` would never end.
    const cmd = ['sh', '-c', 'read line; echo "got $line"'];
    const r = await ctrd.ctr(['run', '--rm', '--runtime', RUNC, BUSYBOX_IMAGE, newId(), ...cmd], { input: 'via stdin\n' });
    expect(r.stdout.toString()).toBe('got via stdin\n');
  });

  it('applies the user and working dir from the image config', async () => {
    const r = await run(BUSYBOX_USER_IMAGE, 'sh', '-c', 'id -u; id -g; pwd; touch own-file && echo writable');
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toBe('1000\n1000\n/home/user\nwritable\n');
  });

  it('uses root and / for the plain image', async () => {
    const r = await run(BUSYBOX_IMAGE, 'sh', '-c', 'id -u; pwd');
    expect(r.stdout.toString()).toBe('0\n/\n');
  });

  it('leaves no process, mount or file after stop()', async () => {
    // A running container at stop() time is the hard case: stop() must remove it too.
    const id = newId();
    const started = await ctrd.ctr(['run', '-d', '--runtime', RUNC, BUSYBOX_IMAGE, id, 'sleep', '1000']);
    expect(started.code).toBe(0);
    const { dir, address, pid } = ctrd;
    expect(pidsMentioning(address).length).toBeGreaterThan(0); // the shim
    const tasks = (await ctrd.ctr(['task', 'ls'])).stdout.toString(); // TASK PID STATUS
    const sleeper = Number(tasks.split('\n').find((l) => l.startsWith(`${id} `))?.split(/\s+/)[1]);
    expect(sleeper).toBeGreaterThan(0);

    await ctrd.stop();

    expect(pid !== undefined && existsSync(`/proc/${pid}`)).toBe(false);
    expect(pidsMentioning(address)).toEqual([]);
    expect(existsSync(`/proc/${sleeper}`)).toBe(false);
    expect(mountsUnder(dir)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(`/run/containerd/runc/default/${id}`)).toBe(false);
  });
});

/** Live processes whose command line contains s (shims name containerd's socket; runc's init its id). */
function pidsMentioning(s: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSafe('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(s)) pids.push(Number(name));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
