import { existsSync } from 'node:fs';
import { silentLogger } from '../../host-agent/log';
import { ForecastLoop } from '../../host-agent/prediction/forecast-loop';
import { serializePlan } from '../../src/contracts/plan';
import { MemoryHistory } from '../helpers/agent-fakes';
import { runCli, tempDir } from '../helpers/cli';
import { examplePlan } from '../helpers/plan-fixture';
import { apiFixture, GiB, TOKEN, type ApiFixture } from '../host-agent/api/api-fixture';

describe('shardform shards / drain / agent (CLI)', () => {
  const dir = tempDir('cli-agent');
  const tokenFile = dir.file('token', `${TOKEN}\n`);
  let f: ApiFixture;
  let url: string;
  beforeAll(async () => {
    f = await apiFixture();
    url = await f.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await f.app.close();
    dir.remove();
  });
  /** A valid plan file whose token file is `token` (its store in the state directory). */
  const planWith = (d: string, token: string) =>
    dir.file(`plan-${Math.random().toString(36).slice(2)}.json`, serializePlan(examplePlan((p) => {
      p.security = { auth: 'token', tokenFile: token };
      p.store = { kind: 'embedded', path: 'store.db' };
      p.applications[0].stateDirectory = `${d}/web`;
    })));

  it('lists the shards of a host', async () => {
    const r = await runCli('shards', 'ls', '--agent', url, '--token-file', tokenFile);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^SHARD\s+APPLICATION\s+STATE\s+PID\s+CPU\s+MEMORY\s+RESTARTS\s+FLAGS$/m);
    expect(r.stdout).toMatch(/^web-0\s+web\s+running\s+\d+\s+0\.5\s+1GiB\s+0\s+-$/m);
  });

  it('reads the token from SHARDFORM_TOKEN and resizes with quantities', async () => {
    process.env.SHARDFORM_TOKEN = TOKEN;
    try {
      const r = await runCli('shards', 'resize', 'web-1', '--agent', url, '--cpu', '1000m', '--memory', '2GiB', '--json');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ shardId: 'web-1', limits: { cpuCores: 1, memoryBytes: 2 * GiB } });
    } finally {
      delete process.env.SHARDFORM_TOKEN;
    }
  });

  it('prints the agent\'s refusal and exits 1 (not a multiple of the granularity, unknown shard, wrong token)', async () => {
    const r = await runCli('shards', 'resize', 'web-0', '--agent', url, '--token-file', tokenFile, '--cpu', '0.7');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("agent answered 400: cpuCores: 0.7 is not a whole multiple of web's granularity (0.5 cores)");
    const missing = await runCli('shards', 'get', 'db-0', '--agent', url, '--token-file', tokenFile);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('agent answered 404');
    const wrong = dir.file('wrong', 'not-the-fleet-token-at-all\n');
    const denied = await runCli('shards', 'ls', '--agent', url, '--token-file', wrong);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('agent answered 401: wrong fleet token');
  });

  it.each([
    [['shards', 'resize', 'web-0', '--agent', 'URL', '--cpu', 'lots'], '--cpu: "lots" is not a CPU quantity'],
    [['shards', 'resize', 'web-0', '--agent', 'URL', '--memory', '2 parsecs'], '--memory: "2 parsecs" is not a byte quantity'],
    [['shards', 'resize', 'web-0', '--agent', 'URL', '--cpu', '0'], '--cpu: "0" must be more than 0 cores'],
    [['shards', 'resize', 'web-0', '--agent', 'URL', '--memory', `1${'0'.repeat(400)}`], '--memory: "1000'],
    [['shards', 'resize', 'web-0', '--agent', 'URL'], '--cpu / --memory: give at least one new limit'],
    [['shards', 'get', '../../etc', '--agent', 'URL'], '<shard>: "../../etc" is not a valid id'],
    [['shards', 'ls', '--agent', 'ftp://x'], '--agent: "ftp://x" is not an http(s) URL'],
    // Request paths are appended to the base URL: a query or fragment would sit before them.
    [['shards', 'ls', '--agent', 'http://h:1/x?y#z'], '--agent: "http://h:1/x?y#z" has a query string or fragment; give the agent\'s base URL only'],
    [['shards', 'get', 'web-0', '--agent', 'URL?'], '" has a query string or fragment'],
    [['migrate', 'web-0', '--to', 'host-b', '--agent', 'http://127.0.0.1:7100/#'], '--agent: "http://127.0.0.1:7100/#" has a query string or fragment'],
    [['drain', '--agent', 'http://127.0.0.1:7100?undo=1'], '--agent: "http://127.0.0.1:7100?undo=1" has a query string or fragment'],
    [['shards', 'ls', '--agent', ''], '--agent: "" is empty; give the agent URL'],
    [['migrate', 'web-0', '--to', 'host-b', '--agent', ''], '--agent: "" is empty; give the agent URL'],
    [['drain', '--agent', ''], '--agent: "" is empty; give the agent URL'],
    [['drain', '--host', ''], '--host: "" is not a valid id'],
    [['drain'], '--agent / --host: give one: --agent URL to drain through the running agent, or --host ID'],
    [['drain', '--undo'], '--agent / --host: give one'],
    [['drain', '--agent', 'URL', '--host', ''], '--host: give either --agent (drain through the agent) or --host (local drain), not both'],
    [['agent', '--plan', 'p.json', '--host', 'Host_A'], '--host: "Host_A" is not a valid id'],
    [['agent', '--host', 'host-a'], '--plan: required'],
    [['agent', '--plan', 'gopher://x/plan', '--host', 'host-a'], '--plan: "gopher://x/plan" is not a file path or an http(s) URL'],
    [['agent', '--plan', 'p.json', '--host', 'host-a', '--listen', 'localhost:99999'], '--listen: "localhost:99999" is not an address'],
    [['agent', '--plan', 'p.json', '--host', 'host-a', '--log-level', 'loud'], '--log-level: "loud" is not one of'],
    [['agent', '--plan', 'p.json', '--host', 'host-a', '--owner-prefix', '../x'], '--owner-prefix: "../x" is not a valid id'],
    [['agent', '--plan', 'p.json', '--host', 'host-a', '--state-dir', '/etc/hostname'], '--state-dir: "/etc/hostname" exists and is not a directory'],
    [['drain', '--host', 'host-a', '--grace-seconds', 'soon'], '--grace-seconds: "soon" is not a number of seconds'],
  ])('refuses %j with exit 2 naming the flag and value', async (args, message) => {
    const r = await runCli(...args.map((a) => a.replace(/^URL/, url)), ...(args[0] === 'shards' ? ['--token-file', tokenFile] : []));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it.each([
    ['shards', 'ls', '--agent', 'http://admin:s3cret@127.0.0.1:7100'],
    ['drain', '--agent', 'https://admin:s3cret@agent.example:7100/'],
    ['migrate', 'web-0', '--to', 'host-b', '--agent', 'http://s3cret@127.0.0.1:7100'],
    ['shards', 'ls', '--agent', 'ftp://admin:s3cret@127.0.0.1/x'],
  ])('refuses credentials in %j with exit 2, never printing them', async (...args) => {
    const r = await runCli(...args, '--token-file', tokenFile);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--agent: "(http|https|ftp):\/\/\*\*\*@/);
    expect(r.stderr).not.toContain('s3cret');
    expect(r.stderr).not.toContain('admin');
  });

  it.each([
    // Forms the URL parser reads a user from though they are not `scheme://user@`, and passwords
    // with an unencoded `/` or `#` (no URL at all): each was echoed whole in the error.
    ['http:/admin:s3cret@127.0.0.1:7100', 'http:/***@127.0.0.1:7100'],
    ['http:admin:s3cret@127.0.0.1:7100', 'http:***@127.0.0.1:7100'],
    ['http:\\\\admin:s3cret@127.0.0.1:7100', 'http:\\\\***@127.0.0.1:7100'],
    [' http://admin:s3cret@127.0.0.1:7100', 'http://***@127.0.0.1:7100'],
    ['http://admin:s3/cret@127.0.0.1:7100', 'http://***@127.0.0.1:7100'],
    ['http://admin:s3#cret@127.0.0.1:7100', 'http://***@127.0.0.1:7100'],
    ['admin:s3cret@127.0.0.1:7100', '***@127.0.0.1:7100'],
  ])('refuses --agent %j with exit 2, showing it as %j', async (agent, shown) => {
    const r = await runCli('shards', 'ls', '--agent', agent, '--token-file', tokenFile);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--agent: ${JSON.stringify(shown)} `);
    expect(r.stderr).not.toContain('s3');
    expect(r.stderr).not.toContain('admin');
  });

  it('refuses a missing token with exit 2 before any request', async () => {
    const r = await runCli('shards', 'ls', '--agent', url);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--token-file: required (or set SHARDFORM_TOKEN)');
  });

  it('refuses an empty --token-file with exit 2, also when SHARDFORM_TOKEN is set', async () => {
    process.env.SHARDFORM_TOKEN = TOKEN;
    try {
      for (const args of [['shards', 'ls', '--agent', url], ['predict', '--agent', url], ['drain', '--agent', url]]) {
        const r = await runCli(...args, '--token-file', '');
        expect(r).toMatchObject({ code: 2, stdout: '' });
        expect(r.stderr).toContain('--token-file: "" is empty; give the file holding the fleet token');
      }
    } finally {
      delete process.env.SHARDFORM_TOKEN;
    }
    const after = await runCli('shards', 'ls', '--agent', url, '--token-file', tokenFile);
    expect(after.stdout).not.toContain('(host drained)');
  });

  it('exits 1 when the agent cannot be reached', async () => {
    const r = await runCli('shards', 'ls', '--agent', 'http://127.0.0.1:1', '--token-file', tokenFile);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot reach the agent at http://127.0.0.1:1');
  });

  it.each([
    ['--grace-seconds', '-5'],
    ['--state-dir', '/var/lib/shardform/host-b'],
    ['--owner-prefix', 'other'],
  ])('refuses %s of a local drain in a drain through the agent, exit 2, host left as it was', async (flag, value) => {
    const r = await runCli('drain', '--agent', url, '--token-file', tokenFile, flag, value);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${flag}: ${JSON.stringify(value)} is for a local drain only (with --host ID)`);
    const after = await runCli('shards', 'ls', '--agent', url, '--token-file', tokenFile);
    expect(after.stdout).toMatch(/^web-0\s+web\s+running/m);
    expect(after.stdout).not.toContain('(host drained)');
  });

  it('predict --agent reads GET /v1/predictions: before the first prediction pass, then a vector per shard and the application', async () => {
    const now = 1_800_000_000;
    const history = new MemoryHistory();
    for (let t = now - 7200; t < now; t += 30) {
      history.append(['web-0', 'web-1'].map((shardId) => ({ atSeconds: t, shardId, applicationId: 'web', cpuCores: 0.25, cpuThrottledRatio: 0, memoryBytes: 1e8, readOps: 0, writeOps: 0, readBytesPerSecond: 0, writeBytesPerSecond: 0 })));
    }
    const plan = examplePlan();
    const shards = ['web-0', 'web-1'].map((shardId) => ({ shardId, applicationId: 'web', allocation: { cpuCores: 0.5, memoryBytes: GiB } }));
    const forecast = new ForecastLoop({ history, shards: () => shards, plan: () => plan, logger: silentLogger(), clock: () => now });
    const g = await apiFixture({ history, forecast });
    const at = await g.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const before = await runCli('predict', '--agent', at, '--token-file', tokenFile);
      expect(before.code).toBe(0);
      expect(before.stdout).toContain('host host-a: no predictor settings yet');
      expect(before.stdout).toContain('the agent is still replaying its history');
      await forecast.pass();
      const json = await runCli('predict', '--agent', at, '--token-file', tokenFile, '--json');
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout).map((v: { shard_id?: string; application_id: string }) => v.shard_id ?? v.application_id)).toEqual(['web-0', 'web-1', 'web']);
      const table = await runCli('predict', '--agent', at, '--token-file', tokenFile, '--app', 'web');
      expect(table.stdout).toMatch(/^web\s+\S+Z\s+1\s+100%/m);
      expect(table.stdout).toContain('host host-a: peak over the next 15m at q=0.95, model auto, interval 5m, min history 1d; fed through the grid point of ');
      expect(table.stdout).not.toContain('replaying');
    } finally {
      await forecast.stop();
      await g.app.close();
    }
  });

  it('drains through the agent and lifts the drain', async () => {
    const r = await runCli('drain', '--agent', url, '--token-file', tokenFile);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('stopped web-0');
    expect(r.stdout).toContain('host drained (2 shard(s) stopped)');
    const undo = await runCli('drain', '--agent', url, '--token-file', tokenFile, '--undo');
    expect(undo.stdout).toContain('drain lifted');
  });

  it.each([
    ['SHARDFORM_CRIU_PREFIX', 'opt/criu', 'SHARDFORM_CRIU_PREFIX="opt/criu" must be an absolute directory'],
    ['SHARDFORM_CRIU_KDAT_CACHE', 'maybe', 'SHARDFORM_CRIU_KDAT_CACHE="maybe" must be on or off'],
    ['SHARDFORM_CRIU_LAZY_PAGES', 'yes', 'SHARDFORM_CRIU_LAZY_PAGES="yes" must be on or off'],
  ])('refuses a bad %s with exit 2, naming it and the value', async (name, value, message) => {
    const before = process.env[name];
    process.env[name] = value;
    try {
      const r = await runCli('agent', '--plan', 'p.json', '--host', 'host-a');
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
    } finally {
      if (before === undefined) delete process.env[name];
      else process.env[name] = before;
    }
  });

  // A valid plan, so that only the input named in each case is wrong; the state directory is
  // fresh for each case and must still not exist afterwards. Each case fails before the agent
  // reaches cgroups, with or without the fix (a busy --listen is tested over fakes in agent.test.ts).
  it.each([
    ['an unreadable token file', (d: string) => ['--token-file', `${d}/no-such-token`, '--listen', '127.0.0.1:0'], '--token-file: cannot read'],
    ["the plan's token file unreadable", (d: string) => ['--listen', '127.0.0.1:0', '--plan', planWith(d, `${d}/no-such-token`)], 'security.tokenFile: cannot read'],
    ['--host not in the plan and no --listen', () => ['--host', 'host-z', '--token-file', tokenFile], '--host: "host-z" is not a host of the plan'],
  ])('refuses to start with %s: exit 2, and no state directory or last good plan written', async (_what, extra, message) => {
    const stateDir = `${dir.path}/state-${Math.random().toString(36).slice(2)}`;
    const args = extra(dir.path);
    const plan = args.includes('--plan') ? [] : ['--plan', planWith(dir.path, tokenFile)];
    const r = await runCli('agent', '--host', 'host-a', ...plan, ...args, '--state-dir', stateDir, '--log-level', 'silent');
    expect(r.stderr).toContain(message);
    expect(r.code).toBe(2);
    expect(existsSync(stateDir)).toBe(false);
  });

  it('exits 1 when the agent has no good plan to start from', async () => {
    const bad = dir.file('bad-plan.json', '{"apiVersion": 1}');
    const r = await runCli('agent', '--plan', bad, '--host', 'host-a', '--state-dir', `${dir.path}/state`, '--log-level', 'silent');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no good plan to start from: plan from');
    expect(r.stderr).toContain('fleet: is required');
  });
});
