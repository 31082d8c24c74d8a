// The liveness watch over fake timers and a scripted agent.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LivenessWatch } from '../../shim/src/sandbox/liveness.js';

beforeEach(() => void vi.useFakeTimers());
afterEach(() => void vi.useRealTimers());

describe('LivenessWatch', () => {
  it('stays quiet while the agent answers, however slowly within the bound', async () => {
    const silent: number[] = [];
    const watch = new LivenessWatch({ check: () => new Promise((r) => setTimeout(r, 3_000)), silentMs: 10_000, onSilent: (ms) => void silent.push(ms) });
    watch.start();
    await vi.advanceTimersByTimeAsync(120_000);
    watch.stop();
    expect(silent).toEqual([]);
  });

  it('reports once when no answer came within the bound: a check that never settles, or ones that fail', async () => {
    for (const check of [() => new Promise(() => undefined), () => Promise.reject(new Error('deadline exceeded'))]) {
      const silent: number[] = [];
      const watch = new LivenessWatch({ check, silentMs: 10_000, onSilent: (ms) => void silent.push(ms) });
      watch.start();
      await vi.advanceTimersByTimeAsync(9_000);
      expect(silent).toEqual([]);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(silent).toHaveLength(1);
      expect(silent[0]).toBeGreaterThanOrEqual(10_000);
      expect(silent[0]).toBeLessThan(10_000 + 2_500 + 1);
    }
  });

  it('does not pile up checks while one is under way', async () => {
    let calls = 0;
    const watch = new LivenessWatch({ check: () => (calls++, new Promise(() => undefined)), silentMs: 20_000, onSilent: () => undefined });
    watch.start();
    await vi.advanceTimersByTimeAsync(19_000);
    watch.stop();
    expect(calls).toBe(1);
  });
});
