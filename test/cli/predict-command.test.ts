import Database from 'better-sqlite3';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { checkDemandVector, type DemandVector } from '../../src/contracts/demand-vector';
import { DEFAULT_PREDICTOR_SETTINGS } from '../../src/predictor/application-predictor';
import { vectorsFromHistory } from '../helpers/history-vectors';
import type { MetricSample } from '../../src/store/metric-history';
import { SqliteMetricHistory } from '../../src/store/sqlite-metric-history';
import { GENERIC_HEADER } from '../../src/traces/generic-csv-reader';
import { runCli, tempDir } from '../helpers/cli';

const T = 1_700_006_400;

/** Two applications, 9 days every 5 minutes, with a daily cycle. */
function genericTrace(): string {
  const lines = [GENERIC_HEADER];
  for (let i = 0; i < 9 * 288; i++) {
    const cpu = 1 + 0.5 * Math.sin((2 * Math.PI * i) / 288) + 0.1 * ((i * 7919) % 13) / 13;
    lines.push(`${T + i * 300},web,${cpu.toFixed(4)},${Math.round(cpu * 1e9)},${(cpu * 10).toFixed(2)},5`);
    lines.push(`${T + i * 300},db,${(cpu / 2).toFixed(4)},${Math.round(4e9 + cpu * 1e8)},20,${(cpu * 3).toFixed(2)}`);
  }
  return lines.join('\n') + '\n';
}

describe('shardform predict and backtest', () => {
  const dir = tempDir('predict-cli');
  const trace = dir.file('apps.csv', genericTrace());
  afterAll(() => dir.remove());

  it('predict --json prints one valid demand vector per application', async () => {
    const result = await runCli('predict', '--trace', trace, '--json');
    expect(result.code).toBe(0);
    const vectors = JSON.parse(result.stdout);
    expect(vectors.map((v: { application_id: string }) => v.application_id)).toEqual(['web', 'db']);
    for (const vector of vectors) {
      expect(checkDemandVector(vector).ok).toBe(true);
      expect(vector.horizon_seconds).toBe(900);
    }
  });

  it('predict --app and --horizon select one application and a horizon', async () => {
    const result = await runCli('predict', '--trace', trace, '--app', 'db', '--horizon', '30m', '--quantile', '0.9');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^APPLICATION/);
    expect(result.stdout).toContain('db');
    expect(result.stdout).not.toMatch(/^web/m);
  });

  it.each([
    [['predict', '--trace', 'T', '--horizon', 'soon'], '--horizon: "soon" is not a duration'],
    [['predict', '--trace', 'T', '--horizon', `1${'0'.repeat(400)}s`], '--horizon: "1000'],
    [['predict', '--trace', 'T', '--horizon', '1ms'], '--horizon: "1ms" is not a whole multiple of --interval 5m'],
    [['backtest', '--trace', 'T', '--horizon', '15m', '--interval', '10m'], '--horizon: "15m" is not a whole multiple of --interval 10m'],
    // Work grows with horizon steps x grid points: both are bounded before the trace is read.
    [['predict', '--trace', 'T', '--horizon', '99999999999999999999d'], '--horizon: "99999999999999999999d" is not at most 10000 steps of --interval 5m (34d17h20m)'],
    [['predict', '--trace', 'T', '--horizon', '365d'], '--horizon: "365d" is not at most 10000 steps of --interval 5m (34d17h20m); use a shorter horizon or a coarser interval'],
    [['backtest', '--trace', 'T', '--horizon', '3h', '--interval', '1s'], '--horizon: "3h" is not at most 10000 steps of --interval 1s (2h46m40s)'],
    [['predict', '--trace', 'T', '--interval', '1ms', '--horizon', '1s'], '--interval: "1ms" is not an interval from 1s to 1d'],
    [['backtest', '--trace', 'T', '--interval', '500ms', '--horizon', '1s'], '--interval: "500ms" is not an interval from 1s to 1d'],
    [['predict', '--trace', 'T', '--interval', '99999999999d', '--horizon', '99999999999d'], '--interval: "99999999999d" is not an interval from 1s to 1d'],
    [['predict', '--trace', 'T', '--quantile', '95'], '--quantile: "95" is not a quantile strictly between 0 and 1'],
    [['predict', '--trace', 'T', '--app', 'nope'], '--app: "nope" is not an application in'],
    [['predict', '--trace', 'T', '--app', '../web'], '--app: "../web" is not a valid id'],
    [['predict', '--trace', 'T', '--app', 'Web'], '--app: "Web" is not a valid id'],
    [['backtest', '--trace', 'T', '--resource', 'gpu'], '--resource: "gpu" is not one of cpu, memory, read, write'],
    [['backtest', '--trace', 'T', '--models', 'vpa,prophet'], '--models: "prophet" is not a model name'],
    [['predict', '--trace', '/no/such/trace.csv'], '/no/such/trace.csv: cannot read trace'],
  ])('%j fails with exit 2 naming the flag and value', async (args, message) => {
    const result = await runCli(...args.map((a) => (a === 'T' ? trace : a)));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
  });

  it('predict accepts the longest horizon and the finest interval the bounds allow', async () => {
    // A short trace: the work is grid points x horizon steps, and only the bounds are under test here.
    const short = dir.file('short.csv', [GENERIC_HEADER, ...[0, 60, 120, 180].map((t) => `${T + t},db,1,1000000000,1,1`)].join('\n'));
    expect((await runCli('predict', '--trace', short, '--app', 'db', '--horizon', '10000m', '--interval', '1m', '--json')).code).toBe(0);
    expect((await runCli('predict', '--trace', short, '--app', 'db', '--horizon', '1s', '--interval', '1s', '--json')).code).toBe(0);
  });

  it('predict says on stderr which application got no vector because its memory was never measured', async () => {
    const lines = [GENERIC_HEADER];
    for (let i = 0; i < 400; i++) lines.push(`${T + i * 300},cpu-only,1,,,`, `${T + i * 300},web,1,1000000000,,`);
    const result = await runCli('predict', '--trace', dir.file('cpu-only.csv', lines.join('\n')), '--json');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).map((v: { application_id: string }) => v.application_id)).toEqual(['web']);
    expect(result.stderr).toContain('cpu-only: no demand vector: its cpu or memory was never measured and no allocation is known');
  });

  it('a directory with one application in two files exits 1 naming both, instead of two vectors of one id', async () => {
    const twice = join(dir.path, 'twice');
    mkdirSync(twice);
    writeFileSync(join(twice, 'a.csv'), genericTrace());
    writeFileSync(join(twice, 'b.csv'), genericTrace());
    const result = await runCli('predict', '--trace', twice, '--json');
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toContain(`--trace: ${JSON.stringify(twice)} has application "web" in both ${join(twice, 'a.csv')} and ${join(twice, 'b.csv')}`);
  });

  it('a malformed trace exits 1 with file, line and field', async () => {
    const bad = dir.file('bad.csv', `${GENERIC_HEADER}\n${T},web,x,1,1,1\n`);
    const result = await runCli('predict', '--trace', bad);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${bad}: line 2: field "cpu_cores": "x"`);
  });

  it('backtest --json prints the documented object, vpa and auto included', async () => {
    const result = await runCli('backtest', '--trace', trace, '--resource', 'memory', '--models', 'vpa,seasonal-peak,auto', '--json');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({ resource: 'memory', quantile: 0.95, horizon_seconds: 900, series: 2 });
    expect(Object.keys(report.models)).toEqual(['vpa', 'seasonal-peak', 'auto']);
    for (const figures of Object.values(report.models) as Record<string, number>[]) {
      expect(Object.keys(figures).sort()).toEqual(['pinball', 'points', 'slack', 'violation']);
      expect(figures.points).toBeGreaterThan(1000);
      expect(figures.violation).toBeGreaterThanOrEqual(0);
      expect(figures.violation).toBeLessThanOrEqual(1);
    }
  });

  it('backtest refuses to report figures of nothing: a warm-up longer than the trace, or a resource never measured, exit 2', async () => {
    const long = await runCli('backtest', '--trace', trace, '--warmup', '30d', '--json');
    expect(long).toMatchObject({ code: 2, stdout: '' });
    expect(long.stderr).toContain(`--warmup: "30d" leaves nothing to score: no point of cpu in ${trace}`);
    expect(long.stderr).toContain('(the longest series spans 8d23h55m)');
    const unmeasured = dir.file('no-reads.csv', genericTrace().replace(/^(\d+,\w+,[^,]*,[^,]*),[^,]*,/gm, '$1,,'));
    expect((await runCli('backtest', '--trace', unmeasured, '--resource', 'read')).code).toBe(2);
    expect((await runCli('backtest', '--trace', unmeasured, '--resource', 'write', '--models', 'vpa')).code).toBe(0);
  });

  it('backtest --per-series prints a table per series beside the pooled one', async () => {
    const result = await runCli('backtest', '--trace', trace, '--models', 'vpa,holt', '--per-series');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/cpu: peak over 900 s at q=0.95, 2 series, pooled/);
    expect(result.stdout).toContain(`web (${trace})`);
    expect(result.stdout).toMatch(/^holt\s+\d+\.\d+%/m);
  });
});

/** Four hours of 10 s samples of two web shards and one db shard: a wave plus deterministic noise. */
function historyRows(): MetricSample[] {
  const rows: MetricSample[] = [];
  const sample = (shardId: string, applicationId: string, atSeconds: number, cpuCores: number): MetricSample => ({
    atSeconds, shardId, applicationId, cpuCores, cpuThrottledRatio: 0, memoryBytes: 5e8 + cpuCores * 1e9,
    readOps: 3 * cpuCores, writeOps: 1, readBytesPerSecond: 0, writeBytesPerSecond: 0,
  });
  for (let t = T; t < T + 4 * 3600; t += 10) {
    const wave = 1 + Math.sin((2 * Math.PI * (t - T)) / 7200);
    const noise = ((t * 7919) % 97) / 97;
    rows.push(sample('web-1', 'web', t, 0.5 * wave + 0.2 * noise), sample('web-2', 'web', t, 0.4 * wave), sample('db-1', 'db', t, 0.2 + 0.3 * noise));
  }
  return rows;
}

describe('shardform predict --history', () => {
  const dir = tempDir('predict-history');
  const rows = historyRows();
  const db = join(dir.path, 'metrics.db');
  // The grid point of the newest row (T + 4 h - 10 s) is left out: it may still be filling.
  const through = T + 4 * 3600 - 600;
  const settings = { ...DEFAULT_PREDICTOR_SETTINGS, minHistorySeconds: 3600 };
  const flags = ['--min-history', '1h'];
  const expected = (keep: (row: MetricSample) => boolean = () => true) => {
    const { shards, applications } = vectorsFromHistory(rows.filter((r) => r.atSeconds < through + 300 && keep(r)), settings);
    return [...shards, ...applications];
  };
  beforeAll(() => {
    const store = SqliteMetricHistory.open(db);
    store.append(rows);
    // The first two hours folded into 5-minute buckets, the rest raw: predict reads both.
    expect(store.compact(T + 2 * 3600 + 1, { rawRetentionSeconds: 1, historyRetentionSeconds: 30 * 86400 }).folded).toBe(3 * 720);
    store.close();
  });
  afterAll(() => dir.remove());

  it('--json gives the vectors HostForecast gives over the same samples, shards then applications', async () => {
    const result = await runCli('predict', '--history', db, ...flags, '--json');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const vectors = JSON.parse(result.stdout);
    expect(vectors.map((v: DemandVector) => v.shard_id ?? v.application_id)).toEqual(['db-1', 'web-1', 'web-2', 'db', 'web']);
    expect(vectors).toEqual(expected());
    expect(vectors[0].timestamp).toBe(new Date((through + 900) * 1000).toISOString().replace('.000Z', 'Z'));
    for (const vector of vectors) expect(checkDemandVector(vector).ok).toBe(true);
  });

  it('--app keeps one application; the table has its shards and the application, and says how far it was fed', async () => {
    const json = await runCli('predict', '--history', db, ...flags, '--app', 'web', '--json');
    expect(JSON.parse(json.stdout)).toEqual(expected((r) => r.applicationId === 'web'));
    const result = await runCli('predict', '--history', db, ...flags, '--app', 'web', '--horizon', '30m');
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n').map((line) => line.split(/\s+/)[0])).toEqual(['APPLICATION', 'web-1', 'web-2', 'web', 'peak', '']);
    expect(result.stdout).toContain(`peak over the next 30m at q=0.95, fed through the grid point of ${new Date(through * 1000).toISOString().replace('.000Z', 'Z')}`);
  });

  it('reads without changing the file, also while the agent holds it open in the middle of a write', async () => {
    const before = statSync(db);
    expect((await runCli('predict', '--history', db, ...flags, '--json')).code).toBe(0);
    expect(statSync(db)).toMatchObject({ size: before.size, mtimeMs: before.mtimeMs });

    const agent = SqliteMetricHistory.open(db);
    const writer = new Database(db);
    try {
      writer.exec('BEGIN IMMEDIATE');
      writer.prepare('DELETE FROM metric_raw').run();
      // A WAL reader neither waits for the open write transaction nor sees it.
      const result = await runCli('predict', '--history', db, ...flags, '--json');
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual(expected());
      writer.exec('ROLLBACK');
      agent.append([{ ...rows[rows.length - 1], atSeconds: T + 4 * 3600 }]);
    } finally {
      writer.close();
      agent.close();
    }
  });

  it('refuses an empty history, exit 2 like a directory without traces', async () => {
    const empty = join(dir.path, 'empty.db');
    SqliteMetricHistory.open(empty).close();
    const result = await runCli('predict', '--history', empty);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--history: ${JSON.stringify(empty)} holds no metric samples yet`);
  });

  it.each([
    ['a missing file', () => join(dir.path, 'nope.db'), 'no such file'],
    ['a directory', () => dir.path, 'not a file'],
    ['a text file', () => dir.file('notes.txt', `${'not a database at all, only words\n'.repeat(8)}`), 'not a SQLite database'],
    ['a database of something else', () => {
      const other = join(dir.path, 'other.db');
      new Database(other).exec('CREATE TABLE IF NOT EXISTS kv (k, v)').close();
      return other;
    }, 'not a metric history (no metric_raw or metric_bucket table)'],
    ['a database with tables of those names and other columns', () => {
      const odd = join(dir.path, 'odd.db');
      new Database(odd).exec('CREATE TABLE metric_raw (x); CREATE TABLE metric_bucket (y)').close();
      return odd;
    }, 'not a metric history (table metric_raw has 1 columns but 13 values were supplied)'],
  ])('refuses %s with exit 2 naming --history and the path', async (_what, path, problem) => {
    const file = path();
    const result = await runCli('predict', '--history', file);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`error: --history: ${problem} (got ${JSON.stringify(file)}); give an agent's metric history, <state-dir>/metrics.db`);
  });

  it('refuses a history whose times are not numbers, exit 2 naming the file, not a stack trace', async () => {
    const odd = join(dir.path, 'text-times.db');
    const history = SqliteMetricHistory.open(odd);
    history.close();
    const db = new Database(odd);
    db.prepare("INSERT INTO metric_raw VALUES ('web-0', 'web', 'yesterday', 1, 0, 1, 0, 0, 0, 0, NULL, NULL, NULL)").run();
    db.close();
    const result = await runCli('predict', '--history', odd);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--history: ${JSON.stringify(odd)} is not a metric history an agent wrote (shard "web-0" has times "yesterday" to "yesterday")`);
    expect(result.stderr).not.toContain('    at ');
  });

  it.each([
    [['--history', 'H', '--app', 'cache'], '--app: "cache" is not an application in'],
    [['--history', 'H', '--token-file', '/etc/token'], '--token-file: "/etc/token" is for --agent only'],
    [['--history', 'H', '--interval', '10m'], '--horizon: "15m" is not a whole multiple of --interval 10m'],
    [[], '--trace / --history / --agent: give exactly one (none given)'],
    [['--history', 'H', '--trace', 'H'], '--trace / --history / --agent: give exactly one (got --trace and --history)'],
    [['--history', 'H', '--agent', 'http://127.0.0.1:1'], '(got --history and --agent)'],
  ])('%j exits 2 naming the flag', async (args, message) => {
    const result = await runCli('predict', ...args.map((a) => (a === 'H' ? db : a)));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
  });
});

describe('shardform predict --agent', () => {
  const dir = tempDir('predict-agent');
  const tokenFile = dir.file('token', 'fleet-token\n');
  const { shards, applications } = vectorsFromHistory(historyRows().filter((r) => r.atSeconds < T + 3600), { ...DEFAULT_PREDICTOR_SETTINGS, minHistorySeconds: 3600 }, new Map([['web-1', { cpuCores: 2, memoryBytes: 4e9 }]]));
  const reply = {
    hostId: 'host-a',
    settings: { model: 'auto', horizonSeconds: 900, quantile: 0.95, intervalSeconds: 300, minHistorySeconds: 86400 },
    fedThroughSeconds: T + 3300,
    catchingUp: false,
    shards,
    applications,
  };
  let answer: { status: number; body: unknown } = { status: 200, body: reply };
  const seen: { url?: string; method?: string; authorization?: string }[] = [];
  const server = createServer((request, response) => {
    seen.push({ url: request.url, method: request.method, authorization: request.headers.authorization });
    request.resume();
    request.on('end', () => response.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body)));
  });
  let url: string;
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  beforeEach(() => {
    answer = { status: 200, body: reply };
    seen.length = 0;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    dir.remove();
  });

  it('--json prints the agent\'s vectors, shards then applications, as the other sources do', async () => {
    const result = await runCli('predict', '--agent', url, '--token-file', tokenFile, '--json');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual([...shards, ...applications]);
    expect(seen).toEqual([{ url: '/v1/predictions', method: 'GET', authorization: 'Bearer fleet-token' }]);
  });

  it('prints the table with the host, its settings and, while it replays its history, that it does', async () => {
    process.env.SHARDFORM_TOKEN = 'env-token';
    try {
      answer = { status: 200, body: { ...reply, catchingUp: true } };
      const result = await runCli('predict', '--agent', url, '--app', 'web');
      expect(result.code).toBe(0);
      expect(seen[0]).toMatchObject({ url: '/v1/predictions?application=web', authorization: 'Bearer env-token' });
      expect(result.stdout).toMatch(/^web-1\s+\S+Z\s+[\d.]+\s+[\d.]+%/m);
      expect(result.stdout.split('\n').map((line) => line.split(/\s+/)[0])).toEqual(['APPLICATION', 'web-1', 'web-2', 'web', 'host', 'the', '']);
      expect(result.stdout).toContain(`host host-a: peak over the next 15m at q=0.95, model auto, interval 5m, min history 1d; fed through the grid point of ${new Date((T + 3300) * 1000).toISOString().replace('.000Z', 'Z')}`);
      expect(result.stdout).toContain('the agent is still replaying its history: vectors may be missing or behind');
      answer = { status: 200, body: { ...reply, settings: null, fedThroughSeconds: null, catchingUp: true, shards: [], applications: [] } };
      const starting = await runCli('predict', '--agent', url);
      expect(starting.stdout).toContain("host host-a: no predictor settings yet (no prediction pass so far, or the plan's cannot be used: see the agent's log); nothing fed yet");
      answer = { status: 200, body: { ...reply, catchingUp: true } };
      const json = await runCli('predict', '--agent', url, '--json');
      expect(json.stderr).toContain('warning: the agent is still replaying its history');
      expect(JSON.parse(json.stdout)).toHaveLength(shards.length + applications.length);
    } finally {
      delete process.env.SHARDFORM_TOKEN;
    }
  });

  it('exits 1 naming the field of a reply that is not what the agent API returns', async () => {
    const { catchingUp: _dropped, ...rest } = reply;
    answer = { status: 200, body: { ...rest, shards: [{ ...shards[0], resources: { ...shards[0].resources, cpu: { cores: 'lots' } } }, { ...shards[1], shard_id: undefined }] } };
    const result = await runCli('predict', '--agent', url, '--token-file', tokenFile);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`error: ${url} is not a Shardform agent, or not one this CLI understands: its answer to GET /v1/predictions is not what the agent API returns: `);
    expect(result.stderr).toContain('catchingUp: is required');
    expect(result.stderr).toContain('shards[0].resources.cpu.cores: must be number (got "lots")');
  });

  it('exits 1 with the agent\'s message when it has no plan', async () => {
    answer = { status: 409, body: { code: 'NO_PLAN', message: 'the agent has no valid plan yet; see GET /v1/plan for why' } };
    const result = await runCli('predict', '--agent', url, '--token-file', tokenFile);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('agent answered 409: the agent has no valid plan yet');
  });

  it.each([
    ['--horizon', '30m'],
    ['--quantile', '0.95'],
    ['--interval', '5m'],
    ['--min-history', '2d'],
  ])('refuses %s %s with --agent (the agent predicts under its plan\'s settings), exit 2, before any request', async (flag, value) => {
    const result = await runCli('predict', '--agent', url, '--token-file', tokenFile, flag, value);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${flag}: ${JSON.stringify(value)} cannot be given with --agent: the agent predicts under its plan's predictor settings`);
    expect(seen).toEqual([]);
  });
});
