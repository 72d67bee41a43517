import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capLogFile, capShardLogs, nextLogCheckTicks, openShardLogs, pruneRemovedShardLogs, shardLogPaths } from '../../../host-agent/runner/shard-logs';
import { mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { writeSync } from 'node:fs';

describe('shard logs', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'logs-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps the last maxBytes in <file>.1 and truncates the file when it is over the cap', async () => {
    const file = join(dir, 'stdout.log');
    appendFileSync(file, 'a'.repeat(100) + 'b'.repeat(50));
    expect(await capLogFile(file, 50)).toBe(true);
    expect(statSync(file).size).toBe(0);
    expect(readFileSync(`${file}.1`, 'utf8')).toBe('b'.repeat(50));
  });

  it('leaves a file at or under the cap alone', async () => {
    const file = join(dir, 'stdout.log');
    appendFileSync(file, 'x'.repeat(50));
    expect(await capLogFile(file, 50)).toBe(false);
    expect(existsSync(`${file}.1`)).toBe(false);
    expect(await capLogFile(join(dir, 'missing.log'), 50)).toBe(false);
  });

  it('a writer holding the file in append mode continues at the new end after truncation, leaving no hole', async () => {
    const paths = shardLogPaths(dir, 'web-0');
    const logs = await openShardLogs(paths);
    writeSync(logs.stdout, 'x'.repeat(200));
    await capLogFile(paths.stdout, 10);
    writeSync(logs.stdout, 'after');
    await logs.close();
    expect(readFileSync(paths.stdout, 'utf8')).toBe('after');
  });

  it('reports both streams\' bytes as found and whether it rotated, for the check schedule', async () => {
    const paths = shardLogPaths(dir, 'web-0');
    expect(await capShardLogs(paths, 100)).toEqual({ bytes: 0, rotated: false });
    const logs = await openShardLogs(paths);
    writeSync(logs.stdout, 'x'.repeat(30));
    writeSync(logs.stderr, 'y'.repeat(150));
    await logs.close();
    expect(await capShardLogs(paths, 100)).toEqual({ bytes: 180, rotated: true });
    expect(await capShardLogs(paths, 100)).toEqual({ bytes: 30, rotated: false });
  });

  it('checks a changing log every tick and backs off, doubling, to the longest gap while it is idle', () => {
    const next = (changed: boolean, previous: number) => nextLogCheckTicks(changed, previous, 5);
    expect(next(true, 0)).toBe(1);
    expect([next(false, 0), next(false, 1), next(false, 2), next(false, 4), next(false, 5)]).toEqual([1, 2, 4, 5, 5]);
    expect(next(true, 5)).toBe(1);
    expect(nextLogCheckTicks(false, 4, 1)).toBe(1);
  });

  it('deletes the logs of shards gone from this host beyond the most recently written few, never a present shard\'s', async () => {
    const write = (shardId: string, secondsAgo: number, file = 'stdout.log') => {
      mkdirSync(join(dir, shardId), { recursive: true });
      writeFileSync(join(dir, shardId, file), 'x');
      const at = Date.now() / 1000 - secondsAgo;
      utimesSync(join(dir, shardId, file), at, at);
    };
    write('web-0', 500); // present: kept however old
    write('gone-old', 400);
    write('gone-mid', 300);
    write('gone-new', 200, 'stderr.log');
    write('gone-new', 900); // its newest file counts, not its oldest
    write('gone-newest', 100);
    expect((await pruneRemovedShardLogs(dir, new Set(['web-0']), 2)).sort()).toEqual(['gone-mid', 'gone-old']);
    expect(readdirSync(dir).sort()).toEqual(['gone-new', 'gone-newest', 'web-0']);
    expect(await pruneRemovedShardLogs(join(dir, 'missing'), new Set(), 2)).toEqual([]);
  });
});
