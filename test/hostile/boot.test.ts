// Sandbox.start against agents that hang, lie, shout or drop the line: every
// boot ends in a typed error within its deadlines and leaves nothing behind.
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentCallError, BootTimeoutError, SandboxDeadError } from '../../shim/src/sandbox/errors.js';
import { startJunkAgent, startSilentAgent } from './broken-transports.js';
import { HOSTILE_ERROR, startFakeAgent, type AgentScript, type FakeAgent } from './fake-agent.js';
import { FAKE_VMM_STDERR } from './fake-vmm.js';
import { BOOT_TIMEOUT_MS, CALL_TIMEOUT_MS, SLACK_MS, VM_EXIT_GRACE_MS, bootAgainst, hostileRoot, outcome, remainsUnder, type HostileBoot, type HostileRoot } from './hostile-harness.js';

let root: HostileRoot;
beforeAll(async () => {
  root = await hostileRoot();
});
afterAll(async () => {
  await root.remove();
});

/** The boot failed with `type` within `withinMs`, its fake VM was stopped, and nothing of it is left. */
async function expectFailedBoot<E extends Error>(boot: HostileBoot, type: new (...args: never[]) => E, withinMs: number): Promise<E> {
  const { result, vmm } = boot;
  expect(result.value, 'the boot should have failed').toBeUndefined();
  expect(result.error).toBeInstanceOf(type);
  expect(result.ms).toBeLessThan(withinMs);
  expect(vmm?.stops).toBe(1);
  expect(await remainsUnder(root.settings.runRoot)).toEqual([]);
  return result.error as E;
}

function scripted(script: AgentScript): { start: (socketPath: string) => Promise<FakeAgent>; agent: () => FakeAgent } {
  let agent: FakeAgent | undefined;
  return {
    start: async (socketPath) => (agent = await startFakeAgent(socketPath, script)),
    agent: () => agent!,
  };
}

describe('an agent that never answers', () => {
  it('Check that hangs: the boot deadline ends it', async () => {
    const err = await expectFailedBoot(await bootAgainst(root, scripted({ check: 'hang' }).start), BootTimeoutError, BOOT_TIMEOUT_MS + SLACK_MS);
    expect(err.message).toContain(`did not answer within ${BOOT_TIMEOUT_MS} ms`);
    expect(err.lastError).toMatch(/DEADLINE_EXCEEDED/);
  });

  it('a channel that accepts and never speaks HTTP/2: the boot deadline ends it', async () => {
    const err = await expectFailedBoot(await bootAgainst(root, startSilentAgent), BootTimeoutError, BOOT_TIMEOUT_MS + SLACK_MS);
    expect(err.lastError).toMatch(/DEADLINE_EXCEEDED/);
  });

  it('GetGuestDetails that hangs: the call deadline ends it', async () => {
    const err = await expectFailedBoot(await bootAgainst(root, scripted({ getGuestDetails: 'hang' }).start), AgentCallError, CALL_TIMEOUT_MS + SLACK_MS);
    expect(err.code).toBe(status.DEADLINE_EXCEEDED);
    expect(err.method).toBe('getGuestDetails');
  });

  it('CreateSandbox that hangs while the VM dies: the VM death is reported at once', async () => {
    const fake = scripted({ createSandbox: 'hang' });
    const boot = await bootAgainst(root, fake.start, (vmm) => {
      const poll = setInterval(() => {
        if (fake.agent()?.stats.calls.createSandbox) {
          clearInterval(poll);
          void vmm.crash();
        }
      }, 5);
    });
    const err = await expectFailedBoot(boot, SandboxDeadError, CALL_TIMEOUT_MS);
    expect(err.message).toContain(FAKE_VMM_STDERR);
  });
});

describe('an agent that answers garbage', () => {
  it('bytes that are no HTTP/2 at all: the boot ends by its deadline, never earlier with a crash', async () => {
    let junk: Awaited<ReturnType<typeof startJunkAgent>> | undefined;
    const boot = await bootAgainst(root, async (p) => (junk = await startJunkAgent(p)));
    const err = await expectFailedBoot(boot, BootTimeoutError, BOOT_TIMEOUT_MS + SLACK_MS);
    expect(err.lastError).toMatch(/UNAVAILABLE|DEADLINE_EXCEEDED/);
    expect(junk!.bytesSent()).toBeGreaterThan(0);
  });

  it('a reply that is no protobuf message: INTERNAL at once', async () => {
    const err = await expectFailedBoot(await bootAgainst(root, scripted({ check: 'garbage' }).start), AgentCallError, SLACK_MS);
    expect(err.code).toBe(status.INTERNAL);
    expect(err.method).toBe('check');
  });

  it('an error status: the agent’s own code and words, at once', async () => {
    const err = await expectFailedBoot(await bootAgainst(root, scripted({ getGuestDetails: 'error' }).start), AgentCallError, SLACK_MS);
    expect(err.code).toBe(HOSTILE_ERROR.code);
    expect(err.details).toBe(HOSTILE_ERROR.details);
  });
});

describe('an agent that answers with a huge message', () => {
  it('64 MiB for Check: refused on its length, RESOURCE_EXHAUSTED at once', async () => {
    const err = await expectFailedBoot(await bootAgainst(root, scripted({ check: 'huge' }).start), AgentCallError, SLACK_MS);
    expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/larger than max/);
  });

  it('64 MiB for GetGuestDetails: the same', async () => {
    const err = await expectFailedBoot(await bootAgainst(root, scripted({ getGuestDetails: 'huge' }).start), AgentCallError, SLACK_MS);
    expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
  });
});

describe('an agent that drops the connection mid-call', () => {
  it('on every Check: retried until the boot deadline', async () => {
    const fake = scripted({ check: 'drop' });
    const err = await expectFailedBoot(await bootAgainst(root, fake.start), BootTimeoutError, BOOT_TIMEOUT_MS + SLACK_MS);
    expect(err.lastError).toMatch(/UNAVAILABLE|DEADLINE_EXCEEDED/);
    expect(fake.agent().stats.calls.check).toBeGreaterThan(1);
  });

  it('on CreateSandbox, the VM still up: UNAVAILABLE once the VM had its chance to exit', async () => {
    const err = await expectFailedBoot(await bootAgainst(root, scripted({ createSandbox: 'drop' }).start), AgentCallError, VM_EXIT_GRACE_MS + SLACK_MS);
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(err.method).toBe('createSandbox');
  });
});

describe('a sandbox that stops while its agent hangs', () => {
  it('DestroySandbox meets the shutdown deadline, and the OOM long-poll ends with the VM', async () => {
    const fake = scripted({ getOomEvent: 'hang', destroySandbox: 'hang' });
    const { result } = await bootAgainst(root, fake.start);
    const sandbox = result.value!;
    const oom = outcome(sandbox.nextOomKill());
    while (!fake.agent().stats.calls.getOomEvent) await new Promise((r) => setTimeout(r, 10));
    const stop = await outcome(sandbox.stop());
    expect(stop.error).toBeUndefined();
    expect(stop.ms).toBeLessThan(root.settings.shutdownTimeoutMs + SLACK_MS);
    expect((await oom).error).toBeInstanceOf(SandboxDeadError);
    expect(await remainsUnder(root.settings.runRoot)).toEqual([]);
  });
});

describe('a well-behaved fake agent', () => {
  it('boots and stops, so the failures above are the hostile agent’s doing', async () => {
    const { result, vmm } = await bootAgainst(root, scripted({}).start);
    expect(result.error).toBeUndefined();
    await result.value!.stop();
    expect(vmm?.stops).toBe(1);
    expect(await remainsUnder(root.settings.runRoot)).toEqual([]);
  });
});
