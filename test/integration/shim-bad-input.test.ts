// Bad input against a live shim: over 10,000 malformed ttrpc frames (random,
// truncated, oversized, wrong frame types, bad stream ids, wrong message and
// field types) on a few hundred connections, some cut mid-frame, some leaving
// their answers unread. The shim must answer each or drop the connection,
// never hang or crash, keep serving, and keep its memory bounded. No VM boots:
// the shim has no sandbox of its own.
// The traffic comes from one seed, printed; KATA_TS_FUZZ_SEED=<seed> replays it.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerd } from '../../proto/gen/containerd/containerd.js';
import { TtrpcClient } from '../../shim/src/ttrpc/client.js';
import { decodeResponse } from '../../shim/src/ttrpc/envelope.js';
import { FrameDecoder, FrameTooLargeError, FrameType } from '../../shim/src/ttrpc/frame.js';
import { Code, codeName, TtrpcError } from '../../shim/src/ttrpc/status.js';
import { childrenOf, LiveShim, procStatus } from '../helpers/live-shim.js';
import { planConnections, rawFrame, TASK_SERVICE, type Answer, type ConnectionPlan, type Tail } from '../helpers/ttrpc-fuzz.js';

const SEED = Number(process.env.KATA_TS_FUZZ_SEED ?? Date.now() % 2 ** 32) >>> 0;
const CONNECTIONS = 320;
const FRAMES_PER_CONNECTION = [20, 60] as const;
const MIN_MALFORMED_FRAMES = 10_000;
/** Connections at once: enough to overlap, few enough to leave the CPU to whatever else runs. */
const CONCURRENCY = 8;
/** The first connections warm the shim up (code compiled, heap grown) before memory is measured. */
const WARM_UP_CONNECTIONS = 32;
/** No wait for the shim may take longer than this: a hang fails the test instead of stalling it. */
const WAIT_MS = 10_000;
/**
 * Allowed VmRSS growth from the warmed-up shim to the end of the run. Measured over some 30 seeds:
 * the shim starts at about 52 MiB and ends 0–41 MiB above its warmed-up figure. That is garbage
 * V8 has not collected yet (it lets ArrayBuffer memory reach tens of MiB before it does), not a
 * leak: runs three times as long peak no higher. A shim that buffers what an unread peer sends
 * goes far past it; a leak of a few bytes per frame is more than a run this short can tell.
 */
const MAX_RSS_GROWTH_MIB = 64;
/** How long an unread connection's write may wait before we take it that the shim stopped reading. */
const PUSHBACK_MS = 300;
/** What an unread connection sends at most: a shim still reading after this buffers without bound. */
const UNREAD_CAP_BYTES = 32 << 20;

interface Outcome {
  malformedSent: number;
  answers: number;
  violations: string[];
}

type Settled = 'done' | 'closed' | 'timeout' | 'failed';

/** One connection of the plan: writes its frames, checks each answer, then plays its tail. */
class FuzzPeer {
  readonly #plan: ConnectionPlan;
  readonly #socket: net.Socket;
  readonly #decoder = new FrameDecoder();
  /** Answers still owed, by stream id. */
  readonly #owed = new Map<number, Answer[]>();
  #owedCount = 0;
  /** After random bytes the server may answer requests we never planned; they only have to be well formed. */
  #tolerant = false;
  #closed = false;
  #wake: () => void = () => undefined;
  readonly outcome: Outcome = { malformedSent: 0, answers: 0, violations: [] };

  constructor(path: string, plan: ConnectionPlan) {
    this.#plan = plan;
    this.#socket = net.createConnection(path);
    this.#socket.once('connect', () => this.#wake());
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on('error', () => undefined); // EPIPE after the server dropped us is an allowed outcome
    this.#socket.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
    for (const frame of plan.frames) if (frame.answer) this.#owe(frame.answer);
  }

  async run(): Promise<Outcome> {
    try {
      if ((await this.#until(() => this.#socket.readyState === 'open')) !== 'done') return this.#fail('could not connect');
      await this.#sendBody();
      await this.#playTail();
    } finally {
      this.#socket.destroy();
    }
    return this.outcome;
  }

  #owe(answer: Answer): void {
    const list = this.#owed.get(answer.streamId) ?? [];
    list.push(answer);
    this.#owed.set(answer.streamId, list);
    this.#owedCount++;
  }

  #fail(what: string): Outcome {
    this.outcome.violations.push(`connection ${this.#plan.index} (tail ${this.#plan.tail.kind}): ${what}`);
    return this.outcome;
  }

  #onData(chunk: Buffer): void {
    for (const item of this.#decoder.feed(chunk)) {
      if (item instanceof FrameTooLargeError) return void this.#fail(`server sent a frame over the limit: ${item.message}`);
      if (item.type !== FrameType.Response) return void this.#fail(`server sent a frame of type ${item.type}`);
      let code: number;
      try {
        code = decodeResponse(item.data).status.code;
      } catch (err) {
        return void this.#fail(`server sent a response that does not decode: ${(err as Error).message}`);
      }
      this.outcome.answers++;
      this.#settle(item.streamId, code);
    }
    this.#wake();
  }

  /** Matches an answer to what its stream is owed; the narrowest match first, as a duplicate's codes include its original's. */
  #settle(streamId: number, code: number): void {
    const list = this.#owed.get(streamId) ?? [];
    const fits = list.filter((a) => a.codes.includes(code)).sort((a, b) => a.codes.length - b.codes.length);
    const match = fits[0];
    if (match) {
      list.splice(list.indexOf(match), 1);
      this.#owedCount--;
      return;
    }
    if (this.#tolerant) return;
    const expected = list.map((a) => a.codes.map(codeName).join('|')).join(', ') || 'no answer';
    const kinds = this.#plan.frames.filter((f) => f.answer?.streamId === streamId).map((f) => f.kind);
    this.#fail(`stream ${streamId} (${kinds.join(', ') || 'tail'}): answered ${codeName(code)}, expected ${expected}`);
  }

  #until(done: () => boolean, timeoutMs = WAIT_MS): Promise<Settled> {
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve) => {
      const check = () => {
        if (done()) return finish('done');
        if (this.#closed) return finish('closed');
        if (this.outcome.violations.length > 0) return finish('failed'); // an owed answer went wrong: it will not come
        if (Date.now() >= deadline) return finish('timeout');
      };
      const timer = setTimeout(check, timeoutMs);
      const finish = (result: Settled) => {
        clearTimeout(timer);
        this.#wake = () => undefined;
        resolve(result);
      };
      this.#wake = check;
      check();
    });
  }

  #write(bytes: Uint8Array): Promise<Error | null | undefined> {
    return new Promise((resolve) => this.#socket.write(bytes, resolve));
  }

  /** All frames, in the planned pieces; each counts once its last byte went out. */
  async #sendBody(): Promise<void> {
    const { frames, splits } = this.#plan;
    const body = Buffer.concat(frames.map((f) => f.bytes));
    const ends: number[] = [];
    for (const f of frames) ends.push((ends.at(-1) ?? 0) + f.bytes.length);
    let from = 0;
    let counted = 0;
    for (const to of [...splits, body.length]) {
      const err = await this.#write(body.subarray(from, to));
      if (err) return void this.#fail(`write failed in step: ${err.message}`);
      for (; counted < frames.length && ends[counted]! <= to; counted++) if (frames[counted]!.malformed) this.outcome.malformedSent++;
      from = to;
    }
    const settled = await this.#until(() => this.#owedCount === 0);
    if (settled === 'timeout') this.#fail(`no answer within ${WAIT_MS} ms with ${this.#owedCount} answers owed`);
    if (settled === 'closed') this.#fail(`closed by the server with ${this.#owedCount} answers owed`);
  }

  async #playTail(): Promise<void> {
    if (this.#closed || this.outcome.violations.length > 0) return;
    const tail = this.#plan.tail;
    if (tail.kind === 'reset') return;
    if (tail.kind === 'unread') return this.#sendUnread(tail);
    if (tail.kind === 'oversized') this.#owe({ streamId: tail.streamId!, codes: [Code.RESOURCE_EXHAUSTED] });
    if (tail.kind === 'random') this.#tolerant = true;
    if (tail.bytes.length > 0) {
      await this.#write(tail.bytes); // may fail once the server dropped us
      this.outcome.malformedSent++;
    }
    if (tail.kind === 'cut') return;
    // The server closes an oversized connection itself; otherwise it follows our half-close.
    if (tail.kind !== 'oversized') this.#socket.end();
    const settled = await this.#until(() => false);
    if (settled === 'timeout') this.#fail(`still open ${WAIT_MS} ms after the ${tail.kind === 'oversized' ? 'oversized frame' : 'client half-closed'}`);
    if (tail.kind === 'oversized' && this.#owedCount > 0) this.#fail(`closed without answering the oversized frame on stream ${tail.streamId} with RESOURCE_EXHAUSTED`);
  }

  /** Requests whose answers we leave unread until the shim stops taking them in; then we read them all. */
  async #sendUnread(tail: Tail): Promise<void> {
    this.#socket.pause();
    let sent = 0;
    for (let streamId = tail.streamId!; sent < UNREAD_CAP_BYTES; streamId = (streamId + 2) >>> 0) {
      const frame = rawFrame(tail.bytes.length, streamId, FrameType.Request, 0, tail.bytes);
      this.#owe({ streamId, codes: [Code.UNIMPLEMENTED] });
      const flushed = this.#write(frame).then(() => true);
      if (!(await Promise.race([flushed, sleep(PUSHBACK_MS).then(() => false)]))) break; // it waits in our own buffer now
      sent += frame.length;
      this.outcome.malformedSent++;
    }
    if (sent >= UNREAD_CAP_BYTES) return void this.#fail(`the shim took in ${UNREAD_CAP_BYTES >> 20} MiB of requests while their answers went unread`);
    this.#socket.resume();
    const answered = await this.#until(() => this.#owedCount === 0);
    if (answered !== 'done') return void this.#fail(`${answered} with ${this.#owedCount} answers owed once the client read again`);
    this.#socket.end();
    if ((await this.#until(() => false)) === 'timeout') this.#fail(`still open ${WAIT_MS} ms after the client half-closed`);
  }
}

/** Runs the plans `concurrency` at a time, in order, and no new one after a violation: the first ones tell. */
async function runAll(path: string, plans: readonly ConnectionPlan[], concurrency: number): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < plans.length && outcomes.every((o) => o.violations.length === 0)) outcomes.push(await new FuzzPeer(path, plans[next++]!).run());
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return outcomes;
}

function total(outcomes: readonly Outcome[]) {
  return {
    malformedSent: outcomes.reduce((n, o) => n + o.malformedSent, 0),
    answers: outcomes.reduce((n, o) => n + o.answers, 0),
    violations: outcomes.flatMap((o) => o.violations),
  };
}

const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;

/** Samples the shim's VmRSS until stopped; the highest value seen. */
function sampleRss(pid: number): { stop(): number } {
  let highest = 0;
  const timer = setInterval(() => (highest = Math.max(highest, procStatus(pid)?.rssKiB ?? 0)), 100);
  return {
    stop() {
      clearInterval(timer);
      return highest;
    },
  };
}

interface RunFigures extends ReturnType<typeof total> {
  ms: number;
  rss: { startKiB: number; warmKiB: number; highestKiB: number; afterKiB: number; peakKiB: number };
}

/** All plans against the shim: a warm-up first, then the rest while VmRSS is sampled. */
async function fuzz(shim: LiveShim, plans: readonly ConnectionPlan[]): Promise<RunFigures> {
  const began = Date.now();
  const startKiB = procStatus(shim.pid)!.rssKiB;
  const outcomes = await runAll(shim.socketPath, plans.slice(0, WARM_UP_CONNECTIONS), CONCURRENCY);
  const warmKiB = procStatus(shim.pid)!.rssKiB;
  const sampler = sampleRss(shim.pid);
  if (total(outcomes).violations.length === 0) outcomes.push(...(await runAll(shim.socketPath, plans.slice(WARM_UP_CONNECTIONS), CONCURRENCY)));
  const highestKiB = sampler.stop();
  const ms = Date.now() - began;
  await sleep(500); // for the last connections to close on the shim's side
  const after = procStatus(shim.pid);
  return { ...total(outcomes), ms, rss: { startKiB, warmKiB, highestKiB, afterKiB: after?.rssKiB ?? 0, peakKiB: after?.peakRssKiB ?? 0 } };
}

function report(plans: readonly ConnectionPlan[], run: RunFigures): void {
  const tails = [...new Set(plans.map((p) => p.tail.kind))].map((kind) => `${kind} ${plans.filter((p) => p.tail.kind === kind).length}`);
  const { startKiB, warmKiB, highestKiB, afterKiB, peakKiB } = run.rss;
  console.log(
    `bad-input: ${run.malformedSent} malformed frames on ${plans.length} connections (tails: ${tails.join(', ')}), ${run.answers} answers, ${run.ms} ms\n` +
      `bad-input: shim VmRSS ${mib(startKiB)} MiB at start, ${mib(warmKiB)} MiB warmed up, highest ${mib(highestKiB)} MiB, ${mib(afterKiB)} MiB after; VmHWM ${mib(peakKiB)} MiB`,
  );
}

describe('a live shim fed malformed ttrpc frames', () => {
  const shim = new LiveShim();

  beforeAll(() => shim.start(), 60_000);
  afterAll(() => shim.stop());

  it(`answers or drops ${MIN_MALFORMED_FRAMES}+ of them on ${CONNECTIONS} connections, keeps serving, and its memory stays bounded`, async () => {
    console.log(`bad-input: seed ${SEED} (replay: KATA_TS_FUZZ_SEED=${SEED})`);
    const plans = planConnections(SEED, CONNECTIONS, FRAMES_PER_CONNECTION);
    const run = await fuzz(shim, plans);
    report(plans, run);

    const context = `seed ${SEED}`;
    expect(run.violations.slice(0, 20), context).toEqual([]);
    expect(run.malformedSent, context).toBeGreaterThanOrEqual(MIN_MALFORMED_FRAMES);
    expect(procStatus(shim.pid)?.state ?? 'gone', `${context}: the shim is still running`).toMatch(/^[RSD]/);
    expect(mib(run.rss.afterKiB - run.rss.warmKiB), `${context}: VmRSS growth in MiB`).toBeLessThan(MAX_RSS_GROWTH_MIB);
    await expectStillServing(shim);
    expect(childrenOf(shim.pid), 'no VM or any other process started').toEqual([]);
    expect(shim.log.filter((l) => /uncaught exception|internal error/.test(l)), context).toEqual([]);
    expect(shim.log.find((l) => l.includes('msg="shim serving"'))).toContain('bootingAhead=false');
  }, 120_000);
});

/** A well-formed call on a fresh connection gets its proper answer. */
async function expectStillServing(shim: LiveShim): Promise<void> {
  const { ConnectRequest, ConnectResponse, StateRequest, StateResponse } = containerd.task.v2;
  const client = await TtrpcClient.connect(shim.socketPath);
  try {
    const info = await client.callMessage(TASK_SERVICE, 'Connect', ConnectRequest, { id: 'absent' }, ConnectResponse, { timeoutMs: WAIT_MS });
    expect(info.shimPid).toBe(shim.pid);
    const state = client.callMessage(TASK_SERVICE, 'State', StateRequest, { id: 'absent' }, StateResponse, { timeoutMs: WAIT_MS });
    await expect(state).rejects.toThrow(TtrpcError);
    await expect(state).rejects.toMatchObject({ code: Code.NOT_FOUND });
  } finally {
    client.close();
  }
}
