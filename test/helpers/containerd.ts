// A private containerd for e2e tests and the demo: its own root, state, socket
// and config under a short /tmp dir, driven by the real `ctr`, so tests neither
// touch nor depend on a system containerd. stop() leaves no process, mount or file.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// Also when compiled into dist/ (the benchmarks import this harness).
const above = resolve(import.meta.dirname, '../..');
export const REPO = basename(above) === 'dist' ? dirname(above) : above;
export const BUSYBOX_IMAGE = 'docker.io/library/kata-ts-busybox:latest';
export const BUSYBOX_USER_IMAGE = 'docker.io/library/kata-ts-busybox-user:latest';
export const BUSYBOX_IMAGE_TAR = join(REPO, 'build/busybox-image.tar');
export const BUSYBOX_USER_IMAGE_TAR = join(REPO, 'build/busybox-image-user.tar');
export const PAUSE_IMAGE = 'localhost/kata-ts-pause:latest';
export const PAUSE_IMAGE_TAR = join(REPO, 'build/pause-image.tar');
/** The CNI bridge a CRI containerd's pods hang on; removed at stop() (the bridge plugin leaves it). */
export const CNI_BRIDGE = 'ktcri0';
export const CNI_SUBNET = '10.88.0.0/16';

export interface PrivateContainerdOptions {
  /** Put first on containerd's PATH: `io.containerd.kata-ts.v2` resolves to `containerd-shim-kata-ts-v2` there. */
  shimDir?: string;
  /** ctr's namespace (default `default`). */
  namespace?: string;
  /** containerd's log level; at debug or trace containerd also passes `-debug` to shims. */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /**
   * Keep the CRI plugin loaded (off by default), with a CNI bridge network, the local pause image
   * as sandbox image and a streaming server on 127.0.0.1. Import PAUSE_IMAGE_TAR into k8s.io.
   */
  cri?: boolean;
  startTimeoutMs?: number;
}

export interface CtrOptions {
  input?: Buffer | string;
  timeoutMs?: number;
  namespace?: string;
  /** For ctr run --cni, which reads only /etc/cni/net.d and /opt/cni/bin: see ctrCommand. */
  cni?: CtrCniDirs;
}

export interface CtrCniDirs {
  /** The network configuration ctr loads (the first file in it). */
  confDir: string;
  /** An empty folder for the private overlays. */
  workDir: string;
}

/**
 * ctr's command. With `cni`, ctr runs in a mount namespace of its own where /etc and /opt are
 * overlays that add /etc/cni/net.d (confDir) and /opt/cni/bin (Debian's /usr/lib/cni), so the
 * host's own folders stay untouched.
 */
function ctrCommand(argv: string[], cni: CtrCniDirs | undefined): string[] {
  if (!cni) return ['ctr', ...argv];
  const script = `set -e
mount -t tmpfs tmpfs "$W"
for d in etc opt; do
  mkdir "$W/$d-upper" "$W/$d-work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/$d-upper,workdir=$W/$d-work" "/$d"
done
mkdir -p /etc/cni /opt/cni
# The host may have its own (containerd's CRI plugin makes /etc/cni/net.d): hidden in the overlay only.
rm -rf /etc/cni/net.d /opt/cni/bin
ln -s "$C" /etc/cni/net.d
ln -s /usr/lib/cni /opt/cni/bin
exec ctr "$@"`;
  return ['unshare', '-m', '--propagation', 'private', '--', 'env', `W=${cni.workDir}`, `C=${cni.confDir}`, 'sh', '-c', script, 'sh', ...argv];
}

export interface CtrResult {
  stdout: Buffer;
  stderr: string;
  code: number;
}

// containerd 1.6 puts shim sockets here whatever its state dir is (compile-time socket root).
const SHIM_SOCKET_DIR = '/run/containerd/s/';
// ctr's default FIFO dir, also outside our dir.
const FIFO_DIR = '/run/containerd/fifo/';
// containerd-shim-runc-v2's runc --root is /run/containerd/runc/<ns>, also fixed.
const RUNC_ROOT = '/run/containerd/runc';

/** containerd on the config in dir, logging to dir/containerd.log, finding shims in shimDir first. */
function spawnDaemon(dir: string, shimDir: string): ChildProcess {
  const logFd = openSync(join(dir, 'containerd.log'), 'a');
  const child = spawn('containerd', ['--config', join(dir, 'config.toml')], {
    stdio: ['ignore', logFd, logFd],
    env: { ...process.env, PATH: `${shimDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` },
  });
  closeSync(logFd);
  child.on('error', () => {}); // ENOENT etc. shows up as an exit below
  child.unref();
  return child;
}

export class PrivateContainerd {
  readonly address: string;
  readonly logPath: string;
  private stopping: Promise<void> | undefined;
  private readonly killOnExit = () => this.child.kill('SIGKILL');

  private constructor(
    readonly dir: string,
    private child: ChildProcess,
    readonly namespace: string,
    private readonly shimDir: string,
    private readonly cri: boolean,
  ) {
    this.address = join(dir, 'containerd.sock');
    this.logPath = join(dir, 'containerd.log');
    // If the test process dies without stop(), at least containerd goes with it.
    process.once('exit', this.killOnExit);
  }

  static async start(opts: PrivateContainerdOptions = {}): Promise<PrivateContainerd> {
    // Short path: shim and QEMU unix sockets may live below it (sun_path < 108 bytes).
    const dir = await mkdtemp('/tmp/kctrd-');
    const config = join(dir, 'config.toml');
    await writeFile(config, configToml(dir, opts));
    if (opts.cri) await writeCniConfig(dir);
    const shimDir = opts.shimDir ?? join(REPO, 'build/bin');
    const ctrd = new PrivateContainerd(dir, spawnDaemon(dir, shimDir), opts.namespace ?? 'default', shimDir, opts.cri ?? false);
    try {
      await ctrd.waitReady(opts.startTimeoutMs ?? 15_000);
    } catch (err) {
      const msg = `${(err as Error).message}\n--- ${ctrd.logPath} (tail) ---\n${ctrd.logTail()}`;
      await ctrd.stop();
      throw new Error(msg);
    }
    return ctrd;
  }

  /** Stops containerd (not its shims) and starts it again on the same root and state, as an upgrade would. */
  async restart(timeoutMs = 15_000): Promise<void> {
    await this.killDaemon();
    this.child = spawnDaemon(this.dir, this.shimDir);
    await this.waitReady(timeoutMs);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Runs the real `ctr -a <sock> -n <ns> ...args`; rejects only on timeout. */
  ctr(args: string[], opts: CtrOptions = {}): Promise<CtrResult> {
    const argv = ['-a', this.address, '-n', opts.namespace ?? this.namespace, ...args];
    const timeoutMs = opts.timeoutMs ?? 60_000;
    return new Promise((resolvePromise, reject) => {
      const [program, ...programArgs] = ctrCommand(argv, opts.cni);
      const p = spawn(program!, programArgs, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      p.stdout!.on('data', (c: Buffer) => out.push(c));
      p.stderr!.on('data', (c: Buffer) => err.push(c));
      p.stdin?.on('error', () => {}); // ctr may exit before reading all input
      p.stdin?.end(opts.input);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        p.kill('SIGKILL');
      }, timeoutMs);
      p.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      p.on('close', (code, signal) => {
        clearTimeout(timer);
        const stderr = Buffer.concat(err).toString();
        if (timedOut) reject(new Error(`ctr ${args.join(' ')}: timed out after ${timeoutMs} ms; stderr: ${stderr}`));
        else resolvePromise({ stdout: Buffer.concat(out), stderr, code: code ?? 128 + signalNumber(signal) });
      });
    });
  }

  async importImage(tarPath: string, namespace?: string): Promise<void> {
    const r = await this.ctr(['image', 'import', tarPath], namespace ? { namespace } : {});
    if (r.code !== 0) throw new Error(`ctr image import ${tarPath}: exit ${r.code}: ${r.stderr}`);
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Idempotent; safe to call from afterAll even after a test already stopped it. */
  stop(): Promise<void> {
    this.stopping ??= this.teardown();
    return this.stopping;
  }

  private async teardown(): Promise<void> {
    // Gracefully first: deleting tasks lets the shims unmount rootfs and runc drop its state and cgroups.
    if (this.running()) await this.removeAllContainers().catch(() => {});
    const bundles = this.bundles(); // read before the state dir goes away
    await this.killDaemon();
    await this.killShims();
    for (const b of bundles) {
      // Only if the graceful path failed: runc's state lives outside our dir.
      if (existsSync(join(RUNC_ROOT, b.ns, b.id))) {
        try {
          execFileSync('runc', ['--root', join(RUNC_ROOT, b.ns), 'delete', '--force', b.id], { stdio: 'ignore' });
        } catch {
          /* best effort */
        }
      }
      if (b.socket) rmSync(b.socket, { force: true });
    }
    unmountUnder(this.dir);
    if (this.cri) removeLink(CNI_BRIDGE);
    rmSync(this.dir, { recursive: true, force: true });
    process.removeListener('exit', this.killOnExit);
  }

  private running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running()) throw new Error(`containerd exited early (${this.child.exitCode ?? this.child.signalCode})`);
      // ctr's default dial timeout is 10 s: only ask once the socket exists, with a short one.
      if (existsSync(this.address)) {
        const r = await this.ctr(['--connect-timeout', '2s', 'version'], { timeoutMs: 5_000 });
        if (r.code === 0) return;
      }
      await sleep(50);
    }
    throw new Error(`containerd not ready on ${this.address} after ${timeoutMs} ms`);
  }

  private async removeAllContainers(): Promise<void> {
    const lines = (r: CtrResult) => r.stdout.toString().split('\n').filter(Boolean);
    const opts = { timeoutMs: 20_000 };
    for (const ns of lines(await this.ctr(['namespaces', 'ls', '-q'], opts))) {
      for (const id of lines(await this.ctr(['task', 'ls', '-q'], { ...opts, namespace: ns }))) {
        await this.ctr(['task', 'rm', '-f', id], { ...opts, namespace: ns });
      }
      const ids = lines(await this.ctr(['containers', 'ls', '-q'], { ...opts, namespace: ns }));
      if (ids.length) await this.ctr(['containers', 'rm', ...ids], { ...opts, namespace: ns });
    }
  }

  /** Task bundles containerd still has, with the shim socket each one's `address` file names. */
  private bundles(): { ns: string; id: string; socket?: string }[] {
    const base = join(this.dir, 'state/io.containerd.runtime.v2.task');
    const found: { ns: string; id: string; socket?: string }[] = [];
    for (const ns of safeReaddir(base)) {
      for (const id of safeReaddir(join(base, ns))) {
        let socket: string | undefined;
        try {
          const addr = readFileSync(join(base, ns, id, 'address'), 'utf8').trim().replace(/^unix:\/\//, '');
          if (addr.startsWith(SHIM_SOCKET_DIR)) socket = addr; // never delete anything else
        } catch {
          /* no address yet */
        }
        found.push({ ns, id, socket });
      }
    }
    return found;
  }

  private async killDaemon(): Promise<void> {
    if (!this.running()) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    if (await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)])) return;
    this.child.kill('SIGKILL');
    await exited;
  }

  /**
   * Shims (and whatever they spawned: QEMU, virtiofsd, containers) that name our
   * socket. Only left when the graceful path failed, e.g. containerd died first.
   */
  private async killShims(): Promise<void> {
    const procs = listProcesses();
    const roots = procs.filter((p) => p.pid !== process.pid && p.args.includes(this.address));
    const victims = descendants(roots, procs);
    if (victims.length === 0) return;
    // ctr's stdio FIFOs (/run/containerd/fifo/<n>/<id>-std*) outlive a lost task; the shims hold them open.
    const fifos = victims.flatMap((p) => openFiles(p.pid)).filter((f) => f.startsWith(FIFO_DIR));
    for (const p of roots) signal(p, 'SIGTERM');
    // A kata-ts shim answers SIGTERM by stopping its VM and unmounting its shares: give it time.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && roots.some(alive)) await sleep(50);
    for (const p of victims) signal(p, 'SIGKILL');
    while (victims.some(alive)) await sleep(20);
    for (const f of new Set(fifos)) {
      rmSync(f, { force: true });
      try {
        rmdirSync(dirname(f)); // only succeeds once empty
      } catch {
        /* not empty or gone */
      }
    }
  }
}

function configToml(dir: string, opts: PrivateContainerdOptions): string {
  return `version = 2
root = "${dir}/root"
state = "${dir}/state"
disabled_plugins = [${opts.cri ? '' : '"io.containerd.grpc.v1.cri"'}]

[grpc]
  address = "${dir}/containerd.sock"

[debug]
  level = "${opts.logLevel ?? 'info'}"

[plugins]
  # containerd puts <opt path>/bin first on its PATH: keep it private so no system-wide shim wins.
  [plugins."io.containerd.internal.v1.opt"]
    path = "${dir}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "${PAUSE_IMAGE}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    # This VM gives root no CAP_SYS_RESOURCE: runc cannot lower an OOM score below containerd's.
    restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
  # For ctr the PATH lookup is enough; CRI needs the runtime named (RuntimeClass handler "kata-ts").
  # Naming any runtime replaces CRI's default map, so runc (the default handler) is named again.
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
      Root = "${dir}/runc"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-ts]
    runtime_type = "io.containerd.kata-ts.v2"
    pod_annotations = ["io.katacontainers.*"]
    container_annotations = ["io.katacontainers.*"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${dir}/cni/net.d"
    max_conf_num = 1
`;
}

/** A bridge network with host-local addresses; no loopback entry: CRI adds its own. */
async function writeCniConfig(dir: string): Promise<void> {
  const conf = {
    cniVersion: '1.0.0',
    name: 'kata-ts-test',
    plugins: [
      {
        type: 'bridge',
        bridge: CNI_BRIDGE,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: CNI_SUBNET }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: join(dir, 'cni/ipam') },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
  await mkdir(join(dir, 'cni/net.d'), { recursive: true });
  await writeFile(join(dir, 'cni/net.d/10-kata-ts-test.conflist'), JSON.stringify(conf, null, 2));
}

function removeLink(name: string): void {
  try {
    execFileSync('ip', ['link', 'del', name], { stdio: 'ignore' });
  } catch {
    // not there
  }
}

interface Proc {
  pid: number;
  ppid: number;
  start: string; // starttime from /proc/<pid>/stat, so a reused pid is never signalled
  args: string[];
}

function listProcesses(): Proc[] {
  const procs: Proc[] = [];
  for (const name of safeReaddir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = statFields(Number(name));
      const args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (stat) procs.push({ pid: Number(name), ppid: Number(stat[1]), start: stat[19] ?? '', args });
    } catch {
      /* exited meanwhile */
    }
  }
  return procs;
}

/** Fields of /proc/<pid>/stat after the command name: [0] state, [1] ppid, [19] starttime. */
function statFields(pid: number): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function openFiles(pid: number): string[] {
  return safeReaddir(`/proc/${pid}/fd`).flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/${pid}/fd/${fd}`)];
    } catch {
      return [];
    }
  });
}

function descendants(roots: Proc[], all: Proc[]): Proc[] {
  const out = [...roots];
  for (let i = 0; i < out.length; i++) out.push(...all.filter((p) => p.ppid === out[i]!.pid));
  return out;
}

function alive(p: Proc): boolean {
  const f = statFields(p.pid);
  return f !== undefined && f[19] === p.start && f[0] !== 'Z';
}

function signal(p: Proc, sig: NodeJS.Signals): void {
  try {
    if (alive(p)) process.kill(p.pid, sig);
  } catch {
    /* already gone */
  }
}

/** Mount points at or below dir, as this process's mount namespace sees them. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** Lazily unmounts everything at or below dir, deepest first, until nothing is left. */
function unmountUnder(dir: string): void {
  for (let pass = 0; pass < 5; pass++) {
    const mounts = mountsUnder(dir).sort((a, b) => b.length - a.length);
    if (mounts.length === 0) return;
    for (const m of mounts) {
      try {
        execFileSync('umount', ['-l', m], { stdio: 'ignore' });
      } catch {
        /* stacked or already gone: the next pass sees */
      }
    }
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function signalNumber(sig: NodeJS.Signals | null): number {
  return sig ? constants.signals[sig] : 0;
}
