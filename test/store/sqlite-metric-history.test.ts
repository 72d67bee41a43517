import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded-store';
import type { MetricBucket, MetricSample } from '../../src/store/metric-history';
import { SqliteMetricHistory } from '../../src/store/sqlite-metric-history';
import { StoreError } from '../../src/store/store-error';

const T0 = 1_700_000_200; // 100 s into a 300 s bucket, so buckets start at T0 - 100
const BUCKET_START = T0 - 100;

function sample(atSeconds: number, over: Partial<MetricSample> = {}): MetricSample {
  return {
    atSeconds,
    shardId: 'web-0',
    applicationId: 'web',
    cpuCores: 1,
    cpuThrottledRatio: 0,
    memoryBytes: 1000,
    readOps: 10,
    writeOps: 5,
    readBytesPerSecond: 100,
    writeBytesPerSecond: 50,
    ...over,
  };
}

const isBucket = (row: MetricSample | MetricBucket): row is MetricBucket => 'bucketSeconds' in row;

describe('SqliteMetricHistory', () => {
  let dir: string;
  let history: SqliteMetricHistory;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shardform-history-'));
    history = SqliteMetricHistory.open(join(dir, 'history.db'));
  });
  afterEach(() => {
    history.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('returns raw samples by shard, application and time range, in time order', () => {
    history.append([sample(T0 + 10), sample(T0 + 5, { shardId: 'web-1' }), sample(T0, { shardId: 'db-0', applicationId: 'db' }), sample(T0 + 1)]);
    const all = history.query({ fromSeconds: T0, toSeconds: T0 + 10 });
    expect(all.map((s) => [s.atSeconds, s.shardId])).toEqual([[T0, 'db-0'], [T0 + 1, 'web-0'], [T0 + 5, 'web-1'], [T0 + 10, 'web-0']]);
    expect(history.query({ applicationId: 'web', fromSeconds: T0, toSeconds: T0 + 9 }).map((s) => s.atSeconds)).toEqual([T0 + 1, T0 + 5]);
    expect(history.query({ shardId: 'web-0', fromSeconds: T0, toSeconds: T0 + 100 }).map((s) => s.atSeconds)).toEqual([T0 + 1, T0 + 10]);
    expect(history.query({ shardId: 'web-0', fromSeconds: T0, toSeconds: T0 + 100 })[0]).toEqual(sample(T0 + 1));
  });

  it('folds raw samples past retention into buckets with mean, max and count, and keeps pressure means over the samples that had it', () => {
    history.append([
      sample(T0, { cpuCores: 1, memoryBytes: 100, cpuPressure: 10 }),
      sample(T0 + 60, { cpuCores: 3, memoryBytes: 300 }),
      sample(T0 + 120, { cpuCores: 2, memoryBytes: 200, cpuPressure: 30 }),
    ]);
    const now = T0 + 120 + 3600;
    expect(history.compact(now, { rawRetentionSeconds: 600, historyRetentionSeconds: 86_400 })).toEqual({ folded: 3, deleted: 0 });
    const rows = history.query({ shardId: 'web-0', fromSeconds: T0, toSeconds: now });
    expect(rows).toHaveLength(1);
    const bucket = rows[0] as MetricBucket;
    expect(bucket).toMatchObject({ atSeconds: BUCKET_START, bucketSeconds: 300, samples: 3, cpuCores: 2, cpuCoresMax: 3, memoryBytes: 200, memoryBytesMax: 300, cpuPressure: 20 });
    expect(bucket.memoryPressure).toBeUndefined();
  });

  it('is idempotent: compacting twice at the same time changes nothing', () => {
    history.append([sample(T0), sample(T0 + 30, { cpuCores: 5 })]);
    const now = T0 + 7200;
    const retention = { rawRetentionSeconds: 600, historyRetentionSeconds: 86_400 };
    history.compact(now, retention);
    const once = history.query({ fromSeconds: 0, toSeconds: now });
    expect(history.compact(now, retention)).toEqual({ folded: 0, deleted: 0 });
    expect(history.query({ fromSeconds: 0, toSeconds: now })).toEqual(once);
  });

  it('merges a late sample into an existing bucket exactly', () => {
    const retention = { rawRetentionSeconds: 600, historyRetentionSeconds: 86_400 };
    history.append([sample(T0, { cpuCores: 1 })]);
    history.compact(T0 + 7200, retention);
    history.append([sample(T0 + 10, { cpuCores: 4 })]);
    history.compact(T0 + 7200, retention);
    expect(history.query({ fromSeconds: 0, toSeconds: T0 + 7200 })).toEqual([expect.objectContaining({ samples: 2, cpuCores: 2.5, cpuCoresMax: 4 })]);
  });

  it('keeps raw samples in a bucket that is not complete yet, then returns buckets and raw in time order', () => {
    history.append([sample(T0), sample(T0 + 400), sample(T0 + 500)]);
    // Raw retention ends inside the bucket starting at T0 + 200: only the first bucket folds.
    history.compact(T0 + 450 + 60, { rawRetentionSeconds: 60, historyRetentionSeconds: 86_400 });
    const rows = history.query({ fromSeconds: T0 - 1000, toSeconds: T0 + 1000 });
    expect(rows.map((r) => [r.atSeconds, isBucket(r)])).toEqual([[BUCKET_START, true], [T0 + 400, false], [T0 + 500, false]]);
  });

  it('rolls unfolded raw samples up to the resolution asked for', () => {
    history.append([sample(T0 - 100, { cpuCores: 1 }), sample(T0 - 50, { cpuCores: 3 }), sample(T0 + 250, { cpuCores: 7 })]);
    const rows = history.query({ fromSeconds: T0 - 100, toSeconds: T0 + 300, resolutionSeconds: 300 }) as MetricBucket[];
    expect(rows.map((r) => [r.atSeconds, r.samples, r.cpuCores, r.cpuCoresMax])).toEqual([[BUCKET_START, 2, 2, 3], [BUCKET_START + 300, 1, 7, 7]]);
  });

  it('gives the earliest rows first when asked for a limit, folded and raw alike, at any resolution (also one not a whole second)', () => {
    history.append([sample(T0), sample(T0 + 400), sample(T0 + 500)]);
    history.compact(T0 + 450 + 60, { rawRetentionSeconds: 60, historyRetentionSeconds: 86_400 });
    expect(history.query({ fromSeconds: T0 - 1000, toSeconds: T0 + 1000, limit: 1 }).map((r) => r.atSeconds)).toEqual([BUCKET_START]);
    expect(history.query({ fromSeconds: T0 + 300, toSeconds: T0 + 1000, limit: 2 }).map((r) => r.atSeconds)).toEqual([T0 + 400, T0 + 500]);
    expect(history.query({ fromSeconds: T0 + 300, toSeconds: T0 + 1000, resolutionSeconds: 7.5, limit: 1 }).map((r) => r.atSeconds)).toEqual([Math.floor((T0 + 400) / 7.5) * 7.5]);
    expect(() => history.query({ fromSeconds: T0, toSeconds: T0 + 1, limit: 0 })).toThrow(/^query.limit: not a row count/);
  });

  it('deletes buckets past history retention', () => {
    history.append([sample(T0), sample(T0 + 3 * 86_400)]);
    const retention = { rawRetentionSeconds: 600, historyRetentionSeconds: 2 * 86_400 };
    history.compact(T0 + 3600, retention);
    expect(history.compact(T0 + 3 * 86_400 + 3600, retention)).toEqual({ folded: 1, deleted: 1 });
    expect(history.query({ fromSeconds: 0, toSeconds: T0 + 4 * 86_400 }).map((r) => r.atSeconds)).toEqual([BUCKET_START + 3 * 86_400]);
  });

  it('has the same days of history after the file is reopened (agent restart)', () => {
    const path = join(dir, 'history.db');
    const day = 86_400;
    for (let t = 0; t < 3 * day; t += 600) history.append([sample(T0 + t, { cpuCores: (t / 600) % 4 })]);
    history.compact(T0 + 3 * day, { rawRetentionSeconds: 3600, historyRetentionSeconds: 7 * day });
    const before = history.query({ shardId: 'web-0', fromSeconds: T0, toSeconds: T0 + 3 * day });
    history.close();
    history = SqliteMetricHistory.open(path);
    const after = history.query({ shardId: 'web-0', fromSeconds: T0, toSeconds: T0 + 3 * day });
    expect(after).toEqual(before);
    expect(after.length).toBe(3 * 144);
    expect(after.filter(isBucket).length).toBeGreaterThan(400);
  });

  it('can share the embedded store file', async () => {
    history.close();
    const path = join(dir, 'store.db');
    const store = new EmbeddedStore({ path });
    history = SqliteMetricHistory.open(path);
    history.append([sample(T0)]);
    await store.put('/fleet/demo/a', 'v');
    expect(history.query({ fromSeconds: T0, toSeconds: T0 })).toHaveLength(1);
    expect((await store.get('/fleet/demo/a'))?.value).toBe('v');
    await store.close();
  });

  it('lists every shard with its application and its first and last row, raw and folded alike', () => {
    history.append([sample(T0), sample(T0 + 4000, { cpuCores: 2 }), sample(T0 + 50, { shardId: 'db-0', applicationId: 'db' })]);
    history.compact(T0 + 3600, { rawRetentionSeconds: 600, historyRetentionSeconds: 86_400 });
    expect(history.shardSpans()).toEqual([
      { shardId: 'db-0', applicationId: 'db', firstSeconds: BUCKET_START, lastSeconds: BUCKET_START },
      { shardId: 'web-0', applicationId: 'web', firstSeconds: BUCKET_START, lastSeconds: T0 + 4000 },
    ]);
  });

  describe('read-only', () => {
    const path = () => join(dir, 'history.db');

    it('reads a history another connection holds open and writes to, without changing the file', () => {
      history.append([sample(T0), sample(T0 + 10)]);
      const reader = SqliteMetricHistory.openReadOnly(path());
      expect(reader.query({ fromSeconds: T0, toSeconds: T0 + 10 })).toHaveLength(2);
      // The writer is not held up by the open reader, and the reader sees its commits.
      history.append([sample(T0 + 20)]);
      expect(reader.shardSpans()).toEqual([{ shardId: 'web-0', applicationId: 'web', firstSeconds: T0, lastSeconds: T0 + 20 }]);
      expect(() => reader.append([sample(T0 + 30)])).toThrow(/readonly/);
      reader.close();
      history.close();
      const closed = statSync(path());
      const again = SqliteMetricHistory.openReadOnly(path());
      expect(again.query({ fromSeconds: T0, toSeconds: T0 + 30 })).toHaveLength(3);
      again.close();
      expect(statSync(path())).toMatchObject({ size: closed.size, mtimeMs: closed.mtimeMs });
      history = SqliteMetricHistory.open(path());
    });

    it('reads the buckets and the raw rows of a range from one snapshot, while the agent folds that range in between', () => {
      history.append([sample(T0), sample(T0 + 10, { cpuCores: 3 })]);
      const reader = SqliteMetricHistory.openReadOnly(path());
      const db = (reader as unknown as { db: Database.Database }).db;
      const prepare = db.prepare.bind(db);
      let folded = 0;
      // The agent's compact() commits right after the reader's first statement (the buckets, empty yet).
      jest.spyOn(db, 'prepare').mockImplementation(((sql: string) => {
        const statement = prepare(sql);
        const all = statement.all.bind(statement);
        statement.all = ((...args: unknown[]) => {
          const rows = all(...args);
          if (folded === 0) folded = history.compact(T0 + 7200, { rawRetentionSeconds: 600, historyRetentionSeconds: 86_400 }).folded;
          return rows;
        }) as typeof statement.all;
        return statement;
      }) as typeof db.prepare);
      const rows = reader.query({ fromSeconds: T0 - 1000, toSeconds: T0 + 1000 });
      reader.close();
      expect(folded).toBe(2);
      // The snapshot from before the fold: both raw samples, not nothing.
      expect(rows.map((r) => [r.atSeconds, isBucket(r)])).toEqual([[T0, false], [T0 + 10, false]]);
      expect(history.query({ fromSeconds: T0 - 1000, toSeconds: T0 + 1000 }).map((r) => [r.atSeconds, isBucket(r)])).toEqual([[BUCKET_START, true]]);
    });

    it('refuses a missing file, a directory, a file that is not SQLite and a database without the history tables, naming the field', () => {
      const refused = (file: string) => {
        try {
          SqliteMetricHistory.openReadOnly(file, '--history').close();
        } catch (error) {
          expect(error).toMatchObject({ code: 'INVALID_SETTINGS', field: '--history', value: file });
          return (error as Error).message;
        }
        throw new Error(`${file} was opened`);
      };
      const fix = "; give an agent's metric history, <state-dir>/metrics.db";
      expect(refused(join(dir, 'nope.db'))).toBe(`--history: no such file (got ${JSON.stringify(join(dir, 'nope.db'))})${fix}`);
      mkdirSync(join(dir, 'sub'));
      expect(refused(join(dir, 'sub'))).toContain('--history: not a file');
      const text = join(dir, 'notes.txt');
      writeFileSync(text, 'not a database, just some words that are long enough to fill a header\n'.repeat(4));
      expect(refused(text)).toContain('--history: not a SQLite database');
      const other = join(dir, 'other.db');
      const db = new Database(other);
      db.exec('CREATE TABLE metric_bucket (x)');
      db.close();
      expect(refused(other)).toContain('--history: not a metric history (no metric_raw table)');
      // An empty file is an empty SQLite database: still not a metric history, and still empty.
      const empty = join(dir, 'empty.db');
      writeFileSync(empty, '');
      expect(refused(empty)).toContain('not a metric history (no metric_raw or metric_bucket table)');
      expect(statSync(empty).size).toBe(0);
    });
  });

  describe('bad input changes nothing', () => {
    it.each([
      ['samples[1].cpuCores', sample(T0 + 1, { cpuCores: Number.NaN })],
      ['samples[1].memoryBytes', sample(T0 + 1, { memoryBytes: -1 })],
      ['samples[1].shardId', sample(T0 + 1, { shardId: '../etc' })],
      ['samples[1].ioPressure', sample(T0 + 1, { ioPressure: Number.POSITIVE_INFINITY })],
    ])('refuses a batch whose %s is bad', (field, bad) => {
      let error: unknown;
      try {
        history.append([sample(T0), bad]);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(StoreError);
      expect(error).toMatchObject({ code: 'INVALID_ARGUMENT', field });
      expect(history.query({ fromSeconds: 0, toSeconds: T0 + 10 })).toEqual([]);
    });

    it('refuses a bad retention or range naming the field', () => {
      expect(() => history.compact(T0, { rawRetentionSeconds: 0, historyRetentionSeconds: 10 })).toThrow('retention.rawRetentionSeconds: not a retention (got 0); use a number of seconds > 0');
      expect(() => history.compact(T0, { rawRetentionSeconds: 10, historyRetentionSeconds: 10, bucketSeconds: 1.5 })).toThrow(/^retention.bucketSeconds/);
      expect(() => history.query({ fromSeconds: 10, toSeconds: 5 })).toThrow(/^query.fromSeconds: not a time range/);
    });
  });
});
