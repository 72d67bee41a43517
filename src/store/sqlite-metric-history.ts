/**
 * Metric history in SQLite: raw samples as the sampler appends them, folded by compact() into
 * fixed-width buckets, so an agent keeps days of history in a small file and the predictor
 * has it again after a restart. It may share the embedded store's file (a separate connection;
 * WAL lets both write) or live in a file of its own under the agent's state directory.
 *
 * Buckets keep sums and counts rather than means, so folding late samples into an existing
 * bucket is exact (means are sum/count at read time) and folding is idempotent: compact()
 * folds and deletes raw rows in one transaction, so nothing is ever counted twice.
 */
import Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import { ID_PATTERN } from '../errors';
import type { MetricBucket, MetricHistory, MetricQuery, MetricRetention, MetricSample } from './metric-history';
import { openRetryingWhileBusy } from './sqlite-open';
import { storeError } from './store-error';

export const DEFAULT_BUCKET_SECONDS = 300;

/**
 * A connection to a history file (created if missing) with the pragmas history writes want; the
 * agent's saved model states share it. Safe to call from several processes at once, like the
 * store's own open (see sqlite-open.ts): the tables are created in the same retried step.
 */
export function openHistoryDatabase(path: string): Database.Database {
  const busyTimeoutMs = 5000;
  return openRetryingWhileBusy(() => {
    const db = new Database(path);
    try {
      db.pragma(`busy_timeout = ${busyTimeoutMs}`);
      db.pragma('journal_mode = WAL');
      // NORMAL, not FULL: a power cut may lose the last samples, never corrupt the file, and
      // samples arrive every few seconds; the migration journal (the store) stays FULL.
      db.pragma('synchronous = NORMAL');
      // IMMEDIATE takes the write lock first, so two processes creating the schema serialize;
      // only when a table or index is missing, so an existing history opens while another
      // connection writes (and an index added in a later version is still created).
      const present = db.prepare<[], string>("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')").pluck().all();
      if (SCHEMA_OBJECTS.some((name) => !present.includes(name))) db.transaction(() => db.exec(TABLES)).immediate();
      return db;
    } catch (error) {
      db.close();
      throw error;
    }
  }, busyTimeoutMs);
}

const TABLES = `
CREATE TABLE IF NOT EXISTS metric_raw (
  shard_id TEXT NOT NULL, application_id TEXT NOT NULL, at_seconds REAL NOT NULL,
  cpu_cores REAL NOT NULL, cpu_throttled_ratio REAL NOT NULL, memory_bytes REAL NOT NULL,
  read_ops REAL NOT NULL, write_ops REAL NOT NULL, read_bps REAL NOT NULL, write_bps REAL NOT NULL,
  cpu_pressure REAL, memory_pressure REAL, io_pressure REAL,
  PRIMARY KEY (shard_id, at_seconds)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metric_raw_by_application ON metric_raw(application_id, at_seconds);
CREATE INDEX IF NOT EXISTS metric_raw_by_time ON metric_raw(at_seconds);
CREATE TABLE IF NOT EXISTS metric_bucket (
  shard_id TEXT NOT NULL, application_id TEXT NOT NULL, bucket_seconds INTEGER NOT NULL, start_seconds REAL NOT NULL,
  samples INTEGER NOT NULL,
  cpu_cores_sum REAL NOT NULL, cpu_throttled_ratio_sum REAL NOT NULL, memory_bytes_sum REAL NOT NULL,
  read_ops_sum REAL NOT NULL, write_ops_sum REAL NOT NULL, read_bps_sum REAL NOT NULL, write_bps_sum REAL NOT NULL,
  cpu_cores_max REAL NOT NULL, memory_bytes_max REAL NOT NULL, read_ops_max REAL NOT NULL, write_ops_max REAL NOT NULL,
  cpu_pressure_sum REAL NOT NULL, cpu_pressure_n INTEGER NOT NULL,
  memory_pressure_sum REAL NOT NULL, memory_pressure_n INTEGER NOT NULL,
  io_pressure_sum REAL NOT NULL, io_pressure_n INTEGER NOT NULL,
  PRIMARY KEY (shard_id, bucket_seconds, start_seconds)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metric_bucket_by_application ON metric_bucket(application_id, start_seconds);
CREATE INDEX IF NOT EXISTS metric_bucket_by_time ON metric_bucket(start_seconds);
`;

/** A bucket's columns and how each aggregates raw rows: shared by compact() and rolled-up queries. */
const AGGREGATES: readonly (readonly [column: string, expression: string])[] = [
  ['samples', 'COUNT(*)'],
  ['cpu_cores_sum', 'SUM(cpu_cores)'],
  ['cpu_throttled_ratio_sum', 'SUM(cpu_throttled_ratio)'],
  ['memory_bytes_sum', 'SUM(memory_bytes)'],
  ['read_ops_sum', 'SUM(read_ops)'],
  ['write_ops_sum', 'SUM(write_ops)'],
  ['read_bps_sum', 'SUM(read_bps)'],
  ['write_bps_sum', 'SUM(write_bps)'],
  ['cpu_cores_max', 'MAX(cpu_cores)'],
  ['memory_bytes_max', 'MAX(memory_bytes)'],
  ['read_ops_max', 'MAX(read_ops)'],
  ['write_ops_max', 'MAX(write_ops)'],
  // TOTAL is SUM that gives 0.0 rather than NULL when every pressure is missing.
  ['cpu_pressure_sum', 'TOTAL(cpu_pressure)'],
  ['cpu_pressure_n', 'COUNT(cpu_pressure)'],
  ['memory_pressure_sum', 'TOTAL(memory_pressure)'],
  ['memory_pressure_n', 'COUNT(memory_pressure)'],
  ['io_pressure_sum', 'TOTAL(io_pressure)'],
  ['io_pressure_n', 'COUNT(io_pressure)'],
];
const BUCKET_COLUMNS = AGGREGATES.map(([column]) => column).join(', ');
const AGGREGATE_SELECT = AGGREGATES.map(([column, expression]) => `${expression} AS ${column}`).join(', ');
/** Folding into an existing bucket: sums and counts add up, maxima take the larger. */
const MERGE = AGGREGATES.map(([c]) => (c.endsWith('_max') ? `${c} = MAX(${c}, excluded.${c})` : `${c} = ${c} + excluded.${c}`)).join(', ');

interface RawRow {
  shard_id: string; application_id: string; at_seconds: number;
  cpu_cores: number; cpu_throttled_ratio: number; memory_bytes: number; read_ops: number; write_ops: number;
  read_bps: number; write_bps: number; cpu_pressure: number | null; memory_pressure: number | null; io_pressure: number | null;
}

interface BucketRow {
  shard_id: string; application_id: string; bucket_seconds: number; start_seconds: number; samples: number;
  cpu_cores_sum: number; cpu_throttled_ratio_sum: number; memory_bytes_sum: number; read_ops_sum: number; write_ops_sum: number;
  read_bps_sum: number; write_bps_sum: number; cpu_cores_max: number; memory_bytes_max: number; read_ops_max: number; write_ops_max: number;
  cpu_pressure_sum: number; cpu_pressure_n: number; memory_pressure_sum: number; memory_pressure_n: number; io_pressure_sum: number; io_pressure_n: number;
}

/** One shard's stretch of history: raw samples and buckets together (a bucket counts by its start). */
export interface ShardSpan {
  readonly shardId: string;
  /** Its application (the largest id should that ever have changed, as query() rolls raw samples up). */
  readonly applicationId: string;
  readonly firstSeconds: number;
  readonly lastSeconds: number;
}

const HISTORY_TABLES = ['metric_raw', 'metric_bucket'] as const;
/** Every table and index TABLES creates, read from it so the two never disagree. */
const SCHEMA_OBJECTS = [...TABLES.matchAll(/CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)/g)].map((m) => m[1]!);

const REQUIRED_NUMBERS = ['atSeconds', 'cpuCores', 'cpuThrottledRatio', 'memoryBytes', 'readOps', 'writeOps', 'readBytesPerSecond', 'writeBytesPerSecond'] as const;
const OPTIONAL_NUMBERS = ['cpuPressure', 'memoryPressure', 'ioPressure'] as const;

export class SqliteMetricHistory implements MetricHistory {
  private readonly insert: Database.Statement;
  private readonly statements = new Map<string, Database.Statement>();
  /** Runs reads in one transaction (one snapshot), built once like insertAll. */
  private readonly inSnapshot: <T>(read: () => T) => T;
  /** One transaction over a batch, built once (not a new transaction wrapper per append). */
  private readonly insertAll: (samples: readonly MetricSample[]) => void;

  /** Opens (creating) a history file, or the embedded store's file, with the store's pragmas. */
  static open(path: string): SqliteMetricHistory {
    return new SqliteMetricHistory(openHistoryDatabase(path), true);
  }

  /**
   * Opens an existing history for reading only, e.g. a running agent's (`predict --history`).
   * SQLite's read-only mode never writes the database file, and in WAL mode a reader neither
   * waits for the agent's writes nor holds them up (https://www.sqlite.org/wal.html, "Concurrency").
   * When no connection has the file open, SQLite creates the empty `-wal` and `-shm` files a WAL
   * reader needs beside it ("Read-Only Databases" there) and leaves them for the next opener.
   * A path that is not a file, not SQLite or not a metric history is refused naming `field`.
   */
  static openReadOnly(path: string, field = 'path'): SqliteMetricHistory {
    const refuse = (problem: string) => storeError('INVALID_SETTINGS', field, path, problem, "give an agent's metric history, <state-dir>/metrics.db");
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat === undefined) throw refuse('no such file');
    if (!stat.isFile()) throw refuse('not a file');
    let db: Database.Database | undefined;
    let tables: string[];
    try {
      db = new Database(path, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 5000');
      tables = db.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all();
    } catch (error) {
      db?.close();
      const e = error as { code?: string; message: string };
      throw refuse(e.code === 'SQLITE_NOTADB' ? 'not a SQLite database' : `cannot be read: ${e.message}`);
    }
    const missing = HISTORY_TABLES.filter((table) => !tables.includes(table));
    if (missing.length > 0) {
      db.close();
      throw refuse(`not a metric history (no ${missing.join(' or ')} table)`);
    }
    try {
      return new SqliteMetricHistory(db, true);
    } catch (error) {
      // Tables of those names with other columns: the statements the history prepares do not fit.
      db.close();
      throw refuse(`not a metric history (${(error as Error).message})`);
    }
  }

  constructor(
    private readonly db: Database.Database,
    private readonly ownsDatabase = false,
  ) {
    // A read-only connection cannot create tables; openReadOnly checked they are there.
    if (!db.readonly) db.exec(TABLES);
    this.insert = db.prepare(
      // Positional parameters: binding needs no object per row (the sampler appends one row per shard per interval).
      `INSERT OR REPLACE INTO metric_raw VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.inSnapshot = db.transaction(<T>(read: () => T): T => read()) as <T>(read: () => T) => T;
    this.insertAll = db.transaction((samples: readonly MetricSample[]) => {
      for (const s of samples) {
        this.insert.run(
          s.shardId, s.applicationId, s.atSeconds, s.cpuCores, s.cpuThrottledRatio, s.memoryBytes,
          s.readOps, s.writeOps, s.readBytesPerSecond, s.writeBytesPerSecond,
          s.cpuPressure ?? null, s.memoryPressure ?? null, s.ioPressure ?? null,
        );
      }
    });
  }

  /**
   * A prepared statement, kept per SQL text: queries are built from a handful of shapes (filter,
   * limit, resolution), and the agent's forecast runs one per shard at start; preparing each
   * again cost CPU and garbage.
   */
  private statement<P extends object, R>(sql: string): Database.Statement<P, R> {
    let prepared = this.statements.get(sql);
    if (prepared === undefined) this.statements.set(sql, (prepared = this.db.prepare(sql)));
    return prepared as Database.Statement<P, R>;
  }

  /** Appends a batch in one transaction; a bad sample rejects the whole batch. A repeated (shard, time) replaces the earlier sample. */
  append(samples: readonly MetricSample[]): void {
    samples.forEach(checkSample);
    this.insertAll(samples);
  }

  query(query: MetricQuery): (MetricSample | MetricBucket)[] {
    const { fromSeconds, toSeconds, resolutionSeconds } = query;
    if (!Number.isFinite(fromSeconds) || !Number.isFinite(toSeconds) || fromSeconds > toSeconds) {
      throw storeError('INVALID_ARGUMENT', 'query.fromSeconds', { fromSeconds, toSeconds }, 'not a time range', 'give finite fromSeconds <= toSeconds');
    }
    // Any width > 0: the predictor reads at its grid's interval, which the plan allows to be 7.5 s.
    if (resolutionSeconds !== undefined && !(Number.isFinite(resolutionSeconds) && resolutionSeconds > 0)) {
      throw storeError('INVALID_ARGUMENT', 'query.resolutionSeconds', resolutionSeconds, 'not a bucket width', 'use a number of seconds > 0');
    }
    if (query.limit !== undefined && !(Number.isInteger(query.limit) && query.limit >= 1)) {
      throw storeError('INVALID_ARGUMENT', 'query.limit', query.limit, 'not a row count', 'use a whole number >= 1');
    }
    const filter = [query.shardId === undefined ? '' : 'AND shard_id = @shardId', query.applicationId === undefined ? '' : 'AND application_id = @applicationId'].join(' ');
    // Each part keeps its earliest `limit` rows, so the merged list's first `limit` are the earliest of all.
    const bucketLimit = query.limit === undefined ? '' : `ORDER BY start_seconds LIMIT ${query.limit}`;
    const rawLimit = query.limit === undefined ? '' : `ORDER BY ${resolutionSeconds === undefined ? 'at_seconds' : 'start_seconds'} LIMIT ${query.limit}`;
    const params = { shardId: query.shardId ?? null, applicationId: query.applicationId ?? null, from: fromSeconds, to: toSeconds, width: resolutionSeconds ?? 0 };
    // One snapshot for both reads: a compact() committed by another connection between them (the
    // agent, while `predict --history` reads its file) would move rows from raw to a bucket already read.
    return this.inSnapshot(() => {
      // Buckets that overlap the range: folded history.
      const buckets = this
        .statement<typeof params, BucketRow>(`SELECT * FROM metric_bucket WHERE start_seconds <= @to AND start_seconds + bucket_seconds > @from ${filter} ${bucketLimit}`)
        .all(params)
        .map(toBucket);
      let recent: (MetricSample | MetricBucket)[];
      if (resolutionSeconds === undefined) {
        recent = this
          .statement<typeof params, RawRow>(`SELECT * FROM metric_raw WHERE at_seconds >= @from AND at_seconds <= @to ${filter} ${rawLimit}`)
          .all(params)
          .map(toSample);
      } else {
        // Raw samples not yet folded, rolled up on the fly to the width asked for.
        recent = this
          .statement<typeof params, BucketRow>(
            `SELECT shard_id, MAX(application_id) AS application_id, @width AS bucket_seconds, CAST(at_seconds / @width AS INTEGER) * @width AS start_seconds,
               ${AGGREGATE_SELECT}
             FROM metric_raw WHERE at_seconds >= @from AND at_seconds <= @to ${filter} GROUP BY shard_id, start_seconds ${rawLimit}`,
          )
          .all(params)
          .map(toBucket);
      }
      const rows = [...buckets, ...recent].sort((a, b) => a.atSeconds - b.atSeconds || a.shardId.localeCompare(b.shardId));
      return query.limit === undefined ? rows : rows.slice(0, query.limit);
    });
  }

  /** Every shard in the history with the time of its first and last row, by shard id. */
  shardSpans(): ShardSpan[] {
    return this.db
      .prepare<[], ShardSpan>(
        `SELECT shard_id AS shardId, MAX(application_id) AS applicationId, MIN(first) AS firstSeconds, MAX(last) AS lastSeconds FROM (
           SELECT shard_id, MAX(application_id) AS application_id, MIN(at_seconds) AS first, MAX(at_seconds) AS last FROM metric_raw GROUP BY shard_id
           UNION ALL
           SELECT shard_id, MAX(application_id), MIN(start_seconds), MAX(start_seconds) FROM metric_bucket GROUP BY shard_id
         ) GROUP BY shard_id ORDER BY shard_id`,
      )
      .all();
  }

  compact(nowSeconds: number, retention: MetricRetention): { folded: number; deleted: number } {
    const bucketSeconds = retention.bucketSeconds ?? DEFAULT_BUCKET_SECONDS;
    checkPositive('retention.rawRetentionSeconds', retention.rawRetentionSeconds);
    checkPositive('retention.historyRetentionSeconds', retention.historyRetentionSeconds);
    if (!Number.isInteger(bucketSeconds) || bucketSeconds <= 0) {
      throw storeError('INVALID_ARGUMENT', 'retention.bucketSeconds', bucketSeconds, 'not a bucket width', 'use a whole number of seconds > 0');
    }
    if (!Number.isFinite(nowSeconds)) throw storeError('INVALID_ARGUMENT', 'nowSeconds', nowSeconds, 'not a time', 'pass Unix seconds');
    // Fold whole buckets only: a bucket still receiving raw samples stays raw until it is complete.
    const foldBefore = Math.floor((nowSeconds - retention.rawRetentionSeconds) / bucketSeconds) * bucketSeconds;
    const historyStart = nowSeconds - retention.historyRetentionSeconds;
    return this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO metric_bucket (shard_id, application_id, bucket_seconds, start_seconds, ${BUCKET_COLUMNS})
           SELECT shard_id, MAX(application_id), @width, CAST(at_seconds / @width AS INTEGER) * @width AS start, ${AGGREGATE_SELECT}
           FROM metric_raw WHERE at_seconds < @foldBefore GROUP BY shard_id, start
           ON CONFLICT (shard_id, bucket_seconds, start_seconds) DO UPDATE SET ${MERGE}`,
        )
        .run({ width: bucketSeconds, foldBefore });
      const folded = this.db.prepare('DELETE FROM metric_raw WHERE at_seconds < ?').run(foldBefore).changes;
      const deleted =
        this.db.prepare('DELETE FROM metric_bucket WHERE start_seconds + bucket_seconds <= ?').run(historyStart).changes +
        // Raw samples past history retention too, when raw retention is configured longer.
        this.db.prepare('DELETE FROM metric_raw WHERE at_seconds < ?').run(historyStart).changes;
      return { folded, deleted };
    })();
  }

  close(): void {
    if (this.ownsDatabase) this.db.close();
  }
}

function checkPositive(field: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw storeError('INVALID_ARGUMENT', field, value, 'not a retention', 'use a number of seconds > 0');
  }
}

function checkSample(sample: MetricSample, i: number): void {
  for (const field of ['shardId', 'applicationId'] as const) {
    if (typeof sample[field] !== 'string' || !ID_PATTERN.test(sample[field])) {
      throw storeError('INVALID_ARGUMENT', `samples[${i}].${field}`, sample[field], 'not an id', 'ids are 1-63 characters of a-z, 0-9 and -');
    }
  }
  for (const field of REQUIRED_NUMBERS) {
    const value = sample[field];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw storeError('INVALID_ARGUMENT', `samples[${i}].${field}`, value, 'not a finite number >= 0', 'the sampler derives rates and gauges from kernel counters; drop this sample');
    }
  }
  for (const field of OPTIONAL_NUMBERS) {
    const value = sample[field];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value < 0)) {
      throw storeError('INVALID_ARGUMENT', `samples[${i}].${field}`, value, 'not a finite number >= 0', 'leave it out where the kernel has no PSI');
    }
  }
}

function toSample(row: RawRow): MetricSample {
  return {
    atSeconds: row.at_seconds,
    shardId: row.shard_id,
    applicationId: row.application_id,
    cpuCores: row.cpu_cores,
    cpuThrottledRatio: row.cpu_throttled_ratio,
    memoryBytes: row.memory_bytes,
    readOps: row.read_ops,
    writeOps: row.write_ops,
    readBytesPerSecond: row.read_bps,
    writeBytesPerSecond: row.write_bps,
    ...(row.cpu_pressure === null ? {} : { cpuPressure: row.cpu_pressure }),
    ...(row.memory_pressure === null ? {} : { memoryPressure: row.memory_pressure }),
    ...(row.io_pressure === null ? {} : { ioPressure: row.io_pressure }),
  };
}

/** A bucket's `atSeconds` is its start; gauges and rates are means, `*Max` the peaks. */
function toBucket(row: BucketRow): MetricBucket {
  const n = row.samples;
  return {
    atSeconds: row.start_seconds,
    shardId: row.shard_id,
    applicationId: row.application_id,
    bucketSeconds: row.bucket_seconds,
    samples: n,
    cpuCores: row.cpu_cores_sum / n,
    cpuThrottledRatio: row.cpu_throttled_ratio_sum / n,
    memoryBytes: row.memory_bytes_sum / n,
    readOps: row.read_ops_sum / n,
    writeOps: row.write_ops_sum / n,
    readBytesPerSecond: row.read_bps_sum / n,
    writeBytesPerSecond: row.write_bps_sum / n,
    cpuCoresMax: row.cpu_cores_max,
    memoryBytesMax: row.memory_bytes_max,
    readOpsMax: row.read_ops_max,
    writeOpsMax: row.write_ops_max,
    ...(row.cpu_pressure_n > 0 ? { cpuPressure: row.cpu_pressure_sum / row.cpu_pressure_n } : {}),
    ...(row.memory_pressure_n > 0 ? { memoryPressure: row.memory_pressure_sum / row.memory_pressure_n } : {}),
    ...(row.io_pressure_n > 0 ? { ioPressure: row.io_pressure_sum / row.io_pressure_n } : {}),
  };
}
