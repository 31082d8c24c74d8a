import { describe, expect, it } from 'vitest';
import { parseFlatKeyed, parseIoStat, parseLimit } from '../../agent/src/cgroup-stats.js';
import { execArgs, exitStatus, killArgs, runArgs } from '../../agent/src/crun.js';
import { formatRecord, createLogger } from '../../common/log.js';

describe('crun command lines', () => {
  const paths = { binary: '/usr/bin/crun', root: '/run/crun' };
  it('runs in the foreground with a pid file and, for a terminal, a console socket', () => {
    expect(runArgs(paths, { containerId: 'c1', bundle: '/b', pidFile: '/b/p', logFile: '/b/l', consoleSocket: '/b/s' })).toEqual([
      '--root', '/run/crun', '--log=/b/l', 'run', '--bundle', '/b', '--pid-file', '/b/p', '--console-socket', '/b/s', 'c1',
    ]);
    expect(execArgs(paths, { containerId: 'c1', processFile: '/b/x.json', pidFile: '/b/p', logFile: '/b/l' })).toEqual([
      '--root', '/run/crun', '--log=/b/l', 'exec', '--process', '/b/x.json', '--pid-file', '/b/p', 'c1',
    ]);
    expect(killArgs(paths, '/l', 'c1', 9, true)).toEqual(['--root', '/run/crun', '--log=/l', 'kill', '--all', 'c1', '9']);
  });
  it('reports exit status as a shell does', () => {
    expect(exitStatus(3, null, {})).toBe(3);
    expect(exitStatus(null, 'SIGKILL', { SIGKILL: 9 })).toBe(137);
  });
});

describe('cgroup v2 parsers', () => {
  it('reads flat keyed files, limits and io.stat', () => {
    expect(parseFlatKeyed('usage_usec 10\nuser_usec 7\n').get('user_usec')).toBe(7);
    expect(parseLimit('max\n')).toBe(0);
    expect(parseLimit('67108864\n')).toBe(67108864);
    expect(parseIoStat('254:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n')).toEqual([
      { major: 254, minor: 0, rbytes: 1, wbytes: 2, rios: 3, wios: 4 },
    ]);
  });
});

describe('logger', () => {
  it('writes logfmt records with quoted values where needed', () => {
    expect(formatRecord(new Date(0), 'info', 'sandbox ready', { sandbox: 'sb1', ms: 12, note: 'a b' })).toBe(
      'time=1970-01-01T00:00:00.000Z level=info msg="sandbox ready" sandbox=sb1 ms=12 note="a b"',
    );
  });
  it('filters below its level and carries child fields', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'info', write: (l) => lines.push(l), now: () => new Date(0) }).child({ id: 'x' });
    log.debug('hidden');
    log.warn('shown');
    expect(lines).toEqual(['time=1970-01-01T00:00:00.000Z level=warn msg=shown id=x']);
  });
});

describe('settlesWithin', () => {
  it('tells a promise that settles in time from one that does not, rejection counting as settled', async () => {
    const { settlesWithin } = await import('../../common/settle.js');
    expect(await settlesWithin(Promise.resolve(1), 1000)).toBe(true);
    expect(await settlesWithin(Promise.reject(new Error('x')), 1000)).toBe(true);
    expect(await settlesWithin(new Promise(() => undefined), 20)).toBe(false);
  });
});
