import { checkDemandVector } from '../../src/contracts/demand-vector';
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

  it('backtest --per-series prints a table per series beside the pooled one', async () => {
    const result = await runCli('backtest', '--trace', trace, '--models', 'vpa,holt', '--per-series');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/cpu: peak over 900 s at q=0.95, 2 series, pooled/);
    expect(result.stdout).toContain(`web (${trace})`);
    expect(result.stdout).toMatch(/^holt\s+\d+\.\d+%/m);
  });
});
