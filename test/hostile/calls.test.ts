// AgentClient itself against a hostile agent: the size of what it takes in is
// bounded, a flood is held back by the reader, and calls without a deadline
// still end when the VM goes or the client is closed.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../shim/src/sandbox/agent-client.js';
import { AgentCallError, SandboxDeadError } from '../../shim/src/sandbox/errors.js';
import { ProcessHandle } from '../../shim/src/sandbox/process-handle.js';
import { HOSTILE_ERROR, startFakeAgent, type AgentScript, type FakeAgent } from './fake-agent.js';
import { CALL_TIMEOUT_MS, SLACK_MS, VM_EXIT_GRACE_MS, outcome } from './hostile-harness.js';
import { startLargeReplyAgent } from './large-reply-agent.js';

const MiB = 1024 * 1024;
/** What AgentClient sets as grpc.max_receive_message_length. */
const RECEIVE_LIMIT = 16 * MiB;

let dir: string;
let socketPath: string;
let closeAgent: (() => Promise<void>) | undefined;
let client: AgentClient | undefined;
let exitVm: () => void;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kata-ts-hostile-'));
  socketPath = join(dir, 'agent.sock');
});
afterEach(async () => {
  client?.close();
  client = undefined;
  await closeAgent?.();
  closeAgent = undefined;
  await rm(dir, { recursive: true, force: true });
});

function connect(): AgentClient {
  const vmExited = new Promise<void>((resolve) => (exitVm = resolve));
  client = new AgentClient({ sandboxId: 'hostile', socketPath, vmExited, deathDetail: () => 'the fake VM exited', defaultTimeoutMs: CALL_TIMEOUT_MS });
  return client;
}

async function fakeAgent(script: AgentScript): Promise<FakeAgent> {
  const agent = await startFakeAgent(socketPath, script);
  closeAgent = agent.close;
  return agent;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('message size', () => {
  it('a reply declared as 1 GiB is refused on its length prefix, before the shim holds it', async () => {
    const agent = await startLargeReplyAgent(socketPath, 1024 * MiB);
    closeAgent = agent.close;
    const rssBefore = process.memoryUsage.rss();
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage.rss())), 2);
    const r = await outcome(connect().call('check', {}));
    clearInterval(sampler);
    expect(r.error).toBeInstanceOf(AgentCallError);
    expect((r.error as AgentCallError).code).toBe(status.RESOURCE_EXHAUSTED);
    expect((r.error as AgentCallError).details).toContain(`vs ${RECEIVE_LIMIT}`);
    expect(r.ms).toBeLessThan(SLACK_MS);
    // The shim cut the call after the first frames: of the 1 GiB, at most its flow-control window went out.
    expect(agent.bytesSent()).toBeLessThan(RECEIVE_LIMIT);
    expect(rssPeak - rssBefore).toBeLessThan(32 * MiB);
  });

  it('a reply over grpc-js’s 4 MiB default but under the shim’s own limit is taken', async () => {
    const agent = await startLargeReplyAgent(socketPath, 8 * MiB);
    closeAgent = agent.close;
    const r = await outcome(connect().call('check', {}));
    expect(r.error).toBeUndefined();
    expect(agent.bytesSent()).toBe(8 * MiB);
  });
});

describe('an output stream that floods', () => {
  it('is held back while nobody reads, flows when read, and ends when the client closes', async () => {
    const agent = await fakeAgent({ readStdout: 'flood', waitProcess: 'hang' });
    const handle = new ProcessHandle(connect(), 'c1', '');
    // Nobody reads stdout: the agent can send no more than the flow-control windows and a few buffers.
    await sleep(500);
    const heldAt = agent.stats.streamedBytes;
    await sleep(500);
    expect(agent.stats.streamedBytes).toBe(heldAt);
    expect(heldAt).toBeLessThan(16 * MiB);

    let received = 0;
    handle.stdout.on('data', (b: Buffer) => (received += b.length));
    handle.stdout.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => handle.stdout.once('close', resolve));
    while (received < 32 * MiB) await sleep(20);

    // The agent would go on for ever: closing the client ends the stream and the exit wait.
    const exit = outcome(handle.wait());
    client!.close();
    expect((await outcome(closed)).ms).toBeLessThan(SLACK_MS);
    const r = await exit;
    expect(r.error).toBeInstanceOf(AgentCallError);
    expect((r.error as AgentCallError).code).toBe(status.CANCELLED);
    expect(r.ms).toBeLessThan(VM_EXIT_GRACE_MS + SLACK_MS);
  });
});

describe('an output stream that misbehaves', () => {
  const cases = [
    ['error', HOSTILE_ERROR.code],
    ['garbage', status.INTERNAL],
    ['huge', status.RESOURCE_EXHAUSTED],
    ['drop', status.UNAVAILABLE],
  ] as const;

  it.each(cases)('%s: the stream fails with the status that says why', async (behaviour, code) => {
    await fakeAgent({ readStdout: behaviour });
    const agent = connect();
    const stream = agent.readOutput('readStdout', 'c1', '');
    const failed = outcome(new Promise((_, reject) => stream.on('error', reject).resume()));
    const r = await failed;
    expect(r.ms).toBeLessThan(SLACK_MS);
    const explained = await agent.explain('ReadStdout', r.error);
    expect(explained).toBeInstanceOf(AgentCallError);
    expect((explained as AgentCallError).code).toBe(code);
  });

  it.each(cases)('%s: a process’s output ends and its exit wait settles, within the deadlines', async (behaviour) => {
    await fakeAgent({ readStdout: behaviour });
    const handle = new ProcessHandle(connect(), 'c1', '');
    const ended = outcome(new Promise<void>((resolve) => handle.stdout.once('close', resolve).resume()));
    const exit = await outcome(handle.wait());
    if (exit.error) expect(exit.error).toBeInstanceOf(AgentCallError);
    expect(exit.ms).toBeLessThan(VM_EXIT_GRACE_MS + SLACK_MS);
    expect((await ended).ms).toBeLessThan(VM_EXIT_GRACE_MS + SLACK_MS);
  });
});

describe('calls without a deadline', () => {
  it('the OOM long-poll ends with SandboxDeadError the moment the VM exits', async () => {
    await fakeAgent({ getOomEvent: 'hang' });
    const poll = outcome(connect().call('getOomEvent', {}, null));
    await sleep(200);
    exitVm();
    const r = await poll;
    expect(r.error).toBeInstanceOf(SandboxDeadError);
    expect((r.error as Error).message).toContain('the fake VM exited');
  });

  it('the OOM long-poll ends when the client closes, even if the VM and its channel stay', async () => {
    const agent = await fakeAgent({ getOomEvent: 'hang' });
    const poll = outcome(connect().call('getOomEvent', {}, null));
    while (!agent.stats.calls.getOomEvent) await sleep(10);
    client!.close();
    const r = await poll;
    expect(r.error).toBeInstanceOf(AgentCallError);
    expect((r.error as AgentCallError).code).toBe(status.CANCELLED);
    expect(r.ms).toBeLessThan(VM_EXIT_GRACE_MS + SLACK_MS);
  });

  it('an output stream that never ends ends when the client closes', async () => {
    const agent = await fakeAgent({ readStdout: 'hang' });
    const handle = new ProcessHandle(connect(), 'c1', '');
    handle.stdout.on('error', () => undefined).resume();
    const ended = outcome(new Promise<void>((resolve) => handle.stdout.once('close', resolve)));
    while (!agent.stats.calls.readStdout) await sleep(10);
    client!.close();
    expect((await ended).ms).toBeLessThan(VM_EXIT_GRACE_MS + SLACK_MS);
  });
});

describe('a loud error', () => {
  it('an error text of megabytes is more than HTTP/2 headers carry: the call meets its deadline and keeps none of it', async () => {
    await fakeAgent({ check: 'loud-error' });
    const r = await outcome(connect().call('check', {}));
    expect(r.error).toBeInstanceOf(AgentCallError);
    expect((r.error as AgentCallError).code).toBe(status.DEADLINE_EXCEEDED);
    expect((r.error as Error).message.length).toBeLessThan(1024);
    expect(r.ms).toBeLessThan(CALL_TIMEOUT_MS + SLACK_MS);
  });
});
