// Typed access to the kata-ts native addon (native/kata_ts_native.c).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeAddon {
  /** A bound (not listening) AF_VSOCK stream socket on any CID. */
  vsockBind(port: number): number;
  /** A non-blocking AF_VSOCK stream socket whose connect has begun. */
  vsockConnectStart(cid: number, port: number): number;
  /** Whether that connect is done (false: still under way); throws its error. Never blocks. */
  vsockConnectResult(fd: number): boolean;
  /** The first descriptor sent with SCM_RIGHTS on a connected unix socket. */
  receiveFd(socketFd: number, timeoutMs: number): number;
  /** A blocking unix stream socket listening on path, for a child process to accept on. */
  unixListen(path: string, backlog: number): number;
  /** A new pty: [master, slave], both close-on-exec. */
  openPty(): [number, number];
  setWindowSize(fd: number, rows: number, columns: number): void;
  /** A tap device created in the network namespace at netnsPath (virtio-net header on); its close-on-exec fd. */
  openTap(netnsPath: string, name: string): number;
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount(target: string, flags?: number): void;
  /** Points stdin, stdout and stderr at /dev/null atomically (dup2). */
  detachStdio(): void;
  /** sync(2): writes every dirty page of every filesystem back. */
  sync(): void;
  /** lsetxattr(2) with a string value. */
  setXattr(path: string, name: string, value: string): void;
  /** A close-on-exec memfd of the file's size with its data; its holes and zero pages stay holes. */
  memfdFromFile(path: string, name: string): number;
  /** Credits the bytes to the kernel's pool, reseeds the kernel's generator now, then OpenSSL's. */
  reseedRandom(entropy: Buffer): void;
  /** Sets CLOCK_REALTIME (ms since the epoch). */
  setRealtimeClock(ms: number): void;
}

export const ADDON_FILE = 'kata_ts_native.node';

let loaded: NativeAddon | undefined;

/**
 * Loads the addon from KATA_TS_NATIVE, from beside the running script (the
 * guest image and bundled builds), or from the node-gyp build folder.
 */
export function loadNative(): NativeAddon {
  if (loaded) return loaded;
  const here = typeof __filename === 'string' ? dirname(__filename) : dirname(fileURLToPath(import.meta.url));
  const candidates = [
    process.env.KATA_TS_NATIVE,
    process.argv[1] ? join(dirname(process.argv[1]), ADDON_FILE) : undefined,
    join(here, ADDON_FILE),
    join(here, '..', '..', 'native', 'build', 'Release', ADDON_FILE),
    join(here, 'build', 'Release', ADDON_FILE),
  ].filter((p): p is string => typeof p === 'string');
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`kata-ts native addon not found; looked in: ${candidates.join(', ')} (run make native)`);
  loaded = createRequire(typeof __filename === 'string' ? __filename : import.meta.url)(found) as NativeAddon;
  return loaded;
}
