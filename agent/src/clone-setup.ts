// What a VM restored from a template needs before it serves a sandbox: every
// clone starts with the template's memory, so its wall clock is the moment
// the template was saved and its random generators (the kernel's, and
// OpenSSL's in this process) would repeat the template's output. The host
// hands over its clock and fresh entropy; then the devices it hot-plugged
// after the restore (the virtio-fs share, the NICs) must appear before the
// sandbox's create may use them.
import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import type { NativeAddon } from '../../native/native.js';
import { failedPrecondition, invalidArgument } from './errors.js';
import { guestNicsByMac } from './guest-network.js';

const SYS_VIRTIO = '/sys/bus/virtio/devices';
const VIRTIO_ID_FS = 0x1a;
const DEVICE_WAIT_MS = 10_000;
const POLL_MS = 10;

export interface CloneSetup {
  entropy: Buffer;
  wallClockMs: number;
  macs: readonly string[];
  sharedFs: boolean;
}

/** A virtio-fs device the guest has bound its driver to. */
async function virtioFsBound(): Promise<boolean> {
  for (const dev of await readdir(SYS_VIRTIO).catch(() => [] as string[])) {
    const id = Number.parseInt((await readFile(`${SYS_VIRTIO}/${dev}/device`, 'utf8').catch(() => '')).trim(), 16);
    if (id === VIRTIO_ID_FS && (await stat(`${SYS_VIRTIO}/${dev}/driver`).catch(() => undefined))) return true;
  }
  return false;
}

/** Those of `macs` the guest has no NIC for yet. */
async function macsMissing(macs: readonly string[]): Promise<string[]> {
  if (macs.length === 0) return [];
  const nics = await guestNicsByMac();
  return macs.filter((m) => !nics.has(m.toLowerCase()));
}

export async function setupClone(native: NativeAddon, req: CloneSetup): Promise<{ randomSample: Buffer; devicesWaitMs: number }> {
  if (req.entropy.length < 32 || req.entropy.length > 512) throw invalidArgument(`entropy must be 32 to 512 bytes, not ${req.entropy.length}`);
  if (!Number.isFinite(req.wallClockMs) || req.wallClockMs <= 0) throw invalidArgument('wall_clock_ms must be a time');
  native.setRealtimeClock(req.wallClockMs);
  native.reseedRandom(req.entropy);
  const started = Date.now();
  for (;;) {
    const missingMacs = await macsMissing(req.macs);
    const fsMissing = req.sharedFs && !(await virtioFsBound());
    if (missingMacs.length === 0 && !fsMissing) break;
    if (Date.now() - started > DEVICE_WAIT_MS)
      throw failedPrecondition(`hot-plugged devices did not appear within ${DEVICE_WAIT_MS} ms: ${[...(fsMissing ? ['virtio-fs'] : []), ...missingMacs.map((m) => `NIC ${m}`)].join(', ')}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return { randomSample: randomBytes(16), devicesWaitMs: Date.now() - started };
}
