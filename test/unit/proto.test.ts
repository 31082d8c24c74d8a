import { describe, expect, it } from 'vitest';
import { ContainerStats, CreateContainerRequest, OutputChunk, WaitProcessResponse } from '../../proto/gen/agent.js';

describe('agent proto messages', () => {
  it('round-trip through the wire format', () => {
    const req = {
      containerId: 'c1',
      ociSpecJson: '{"ociVersion":"1.0.2"}',
      rootfsPath: 'c1/rootfs',
      podSandbox: false,
      podNamespaces: ['network', 'pid'],
      mountSources: [
        { index: 3, source: { $case: 'sharedPath' as const, value: 'c1/mounts/3' } },
        { index: 5, source: { $case: 'podTmpfs' as const, value: { name: 'shm', sizeBytes: 67_108_864 } } },
      ],
    };
    expect(CreateContainerRequest.decode(CreateContainerRequest.encode(req).finish())).toEqual(req);
    const exit = { exitStatus: 137, exitedAtMs: 1_764_000_000_123 };
    expect(WaitProcessResponse.decode(WaitProcessResponse.encode(exit).finish())).toEqual(exit);
    const chunk = { data: Buffer.from([0, 1, 2, 255]) };
    expect(Buffer.from(OutputChunk.decode(OutputChunk.encode(chunk).finish()).data)).toEqual(chunk.data);
  });

  it('keeps nested and repeated fields', () => {
    const stats = ContainerStats.fromPartial({
      memory: { usage: 1234, limit: 64 * 1024 * 1024 },
      pids: { current: 3, limit: 64 },
      io: [{ major: 254, minor: 0, rbytes: 10, wbytes: 20, rios: 1, wios: 2 }],
    });
    const back = ContainerStats.decode(ContainerStats.encode(stats).finish());
    expect(back.memory?.limit).toBe(64 * 1024 * 1024);
    expect(back.io).toEqual(stats.io);
    expect(back.pids).toEqual({ current: 3, limit: 64 });
  });

  it('uses the field numbers the .proto file gives', () => {
    // exit_status = 1 (varint), exited_at_ms = 2 (varint)
    expect(Buffer.from(WaitProcessResponse.encode({ exitStatus: 3, exitedAtMs: 5 }).finish())).toEqual(Buffer.from([0x08, 3, 0x10, 5]));
  });
});
