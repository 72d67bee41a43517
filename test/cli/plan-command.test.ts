import { serializePlan } from '../../src/contracts/plan';
import { discoveredPool, examplePlan } from '../helpers/plan-fixture';
import { runBin, runCli, tempDir } from '../helpers/cli';

describe('shardform plan / vector commands', () => {
  const dir = tempDir('shardform-cli');
  afterAll(() => dir.remove());
  const validPlan = dir.file('plan.json', serializePlan(examplePlan()));
  const biggerPlan = dir.file(
    'plan-2.json',
    serializePlan(
      examplePlan((p) => {
        p.generation = 2;
        p.applications[0].shards.max = 6;
        p.pools[0].hosts.push({ id: 'host-c', address: '127.0.0.1:7103', capacity: p.pools[0].hosts[0].capacity, labels: {} });
        p.policies = [];
      }),
    ),
  );
  const invalidPlan = dir.file('bad.json', JSON.stringify({ ...examplePlan(), generation: 0, fleet: 'Bad Fleet' }));
  const notJson = dir.file('broken.json', '{"apiVersion": ');

  it('validate: exit 0 and a one-line summary for a valid plan', async () => {
    const result = await runCli('plan', 'validate', validPlan);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/plan\.json: valid plan for fleet test-fleet, generation 1, sha256:[0-9a-f]{64}\n$/);
  });

  it('validate: exit 1 with every error listed, each naming field and value', async () => {
    const result = await runCli('plan', 'validate', invalidPlan);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${invalidPlan}: fleet: must match pattern "^[a-z0-9][a-z0-9-]{0,62}$" (got "Bad Fleet")`);
    expect(result.stderr).toContain(`${invalidPlan}: generation: must be >= 1 (got 0)`);
    expect(result.stderr).toContain(`${invalidPlan}: invalid (2 errors)`);
  });

  it('validate: exit 1 for a file that is not JSON', async () => {
    const result = await runCli('plan', 'validate', notJson);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${notJson}: (root): not JSON`);
  });

  it('validate: exit 2 for an unreadable file, naming it', async () => {
    const result = await runCli('plan', 'validate', `${dir.path}/missing.json`);
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toBe(`error: cannot read ${dir.path}/missing.json: ENOENT\n`);
  });

  it.each([[['plan', 'validate']], [['plan', 'show', '--json']], [['vector', 'validate']]])('%j with an empty file name exits 2 saying so', async (args) => {
    const result = await runCli(...args, '');
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toBe('error: <file>: "" is not a file name; give the path of the JSON file\n');
  });

  it('exits 2 on usage errors: unknown command, missing argument, unknown flag', async () => {
    expect((await runCli('plan', 'frobnicate')).code).toBe(2);
    expect((await runCli('plan', 'validate')).code).toBe(2);
    const flag = await runCli('plan', 'show', validPlan, '--colour');
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("unknown option '--colour'");
  });

  it('show: prints pools, hosts, applications, policies and the unallocated capacity', async () => {
    const result = await runCli('plan', 'show', validPlan);
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines[0]).toMatch(/^fleet test-fleet {2}generation 1 {2}sha256:/);
    // 2 hosts x (2 cores, 8GiB); web takes 2 initial shards of 0.5 core + 1GiB.
    expect(lines.find((l) => l.startsWith('local '))).toMatch(/^local\s+static\s+2\s+0\.100\s+4\s+16GiB\s+2000\/1000\s+1\s+2GiB\s+3\s+14GiB$/);
    expect(result.stdout).toMatch(/host-b\s+local\s+127\.0\.0\.1:7102\s+2\s+8GiB\s+1000\/500/);
    expect(result.stdout).toMatch(/web\s+local\s+0\.5 cpu \+ 1GiB\s+0\.5 cpu \+ 1GiB\s+1\/2\/4\s+checkpoint\+pre-copy\s+\/bin\/sleep infinity/);
    expect(result.stdout).toContain('migrate when predicted p95 over 15m > 80% of host; cooldown 10m');
  });

  it('show: lists the initial shards no host receives, with the reason — every shard of an AWS pool today', async () => {
    expect((await runCli('plan', 'show', validPlan)).stdout).not.toContain('UNPLACED');
    const awsPlan = dir.file('aws-plan.json', serializePlan(examplePlan((p) => (p.pools = [discoveredPool('local')]))));
    const result = await runCli('plan', 'show', awsPlan);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain('UNPLACED (initial shards no host of the plan receives: no agent runs them)');
    expect(result.stdout).toMatch(/\nweb-0\s+web\s+local\s+pool 'local' lists no hosts in the plan: an AWS pool's hosts are discovered at run time, and placement uses only listed hosts\n/);
    expect(result.stdout).toMatch(/\nweb-1\s+web\s+local\s+pool 'local' lists no hosts/);
  });

  it('diff: lists what changed by id, for people and as JSON', async () => {
    const human = await runCli('plan', 'diff', validPlan, biggerPlan);
    expect(human.code).toBe(0);
    expect(human.stdout).toBe(
      [
        'fleet test-fleet  generation 1 -> 2',
        '+ host host-c',
        '~ application web',
        '    shards.max: 4 -> 6',
        '- policy hot',
        '',
      ].join('\n'),
    );
    const json = JSON.parse((await runCli('plan', 'diff', validPlan, biggerPlan, '--json')).stdout);
    expect(json.generation).toEqual({ old: 1, new: 2 });
    expect(json.changes).toEqual([
      expect.objectContaining({ kind: 'host', id: 'host-c', change: 'added' }),
      { kind: 'application', id: 'web', change: 'changed', fields: [{ path: 'shards.max', old: 4, new: 6 }] },
      { kind: 'policy', id: 'hot', change: 'removed', fields: [] },
    ]);
  });

  it('diff --exit-code: 0 for identical plans, 1 when they differ', async () => {
    const same = await runCli('plan', 'diff', validPlan, validPlan, '--exit-code');
    expect(same).toMatchObject({ code: 0 });
    expect(same.stdout).toContain('no changes');
    expect((await runCli('plan', 'diff', validPlan, biggerPlan, '--exit-code')).code).toBe(1);
  });

  it('diff --exit-code: 1 when only the fleet name or the generation differs — the agents get another plan', async () => {
    const renamed = dir.file('renamed.json', serializePlan(examplePlan((p) => (p.fleet = 'prod-fleet'))));
    const bumped = dir.file('bumped.json', serializePlan(examplePlan((p) => (p.generation = 2))));
    const rename = await runCli('plan', 'diff', validPlan, renamed, '--exit-code');
    expect(rename).toMatchObject({ code: 1 });
    expect(rename.stdout).toBe('fleet test-fleet -> prod-fleet  generation 1 -> 1  (warning: content changed but generation did not increase; agents will refuse it)\nno changes besides the fleet and generation above\n');
    const bump = await runCli('plan', 'diff', validPlan, bumped, '--exit-code');
    expect(bump).toMatchObject({ code: 1, stdout: 'fleet test-fleet  generation 1 -> 2\nno changes besides the fleet and generation above\n' });
  });

  it('diff: a plan that is invalid or not JSON exits 2, never the 1 of --exit-code that means "they differ"', async () => {
    const invalid = await runCli('plan', 'diff', validPlan, invalidPlan, '--exit-code');
    expect(invalid).toMatchObject({ code: 2, stdout: '' });
    expect(invalid.stderr).toContain(`${invalidPlan}: generation: must be >= 1 (got 0)`);
    expect(await runCli('plan', 'diff', notJson, validPlan, '--exit-code')).toMatchObject({ code: 2, stdout: '' });
    expect((await runCli('plan', 'diff', validPlan, invalidPlan)).code).toBe(2);
  });

  it('vector validate: exit codes for valid, invalid and unreadable files', async () => {
    const good = dir.file('v.json', JSON.stringify({ timestamp: '2024-10-27T10:00:00Z', application_id: 'app123', resources: { cpu: { cores: 8 }, memory: { gb: 16 } } }));
    const bad = dir.file('vs.json', JSON.stringify([JSON.parse(require('node:fs').readFileSync(good, 'utf8')), { application_id: 'x' }]));
    expect(await runCli('vector', 'validate', good)).toMatchObject({ code: 0, stdout: `${good}: 1 valid demand vector(s)\n` });
    const invalid = await runCli('vector', 'validate', bad);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain(`${bad}[1]: timestamp: is required`);
    expect(invalid.stderr).toContain('1 of 2 vector(s) invalid');
    expect((await runCli('vector', 'validate', `${dir.path}/none.json`)).code).toBe(2);
  });

  it('vector validate shows a number too large for a double as Infinity, not null', async () => {
    const huge = dir.file('huge.json', '{"timestamp":"2024-10-27T10:00:00Z","application_id":"app123","resources":{"cpu":{"cores":1e400},"memory":{"gb":16}}}');
    const r = await runCli('vector', 'validate', huge);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${huge}: resources.cpu.cores: must be number (got Infinity)`);
  });

  it('the installed bin exits with the same codes as a real process', () => {
    expect(runBin(['plan', 'validate', validPlan]).code).toBe(0);
    expect(runBin(['plan', 'validate', invalidPlan]).code).toBe(1);
    const unreadable = runBin(['plan', 'validate', `${dir.path}/missing.json`]);
    expect(unreadable.code).toBe(2);
    expect(unreadable.stderr).toContain('cannot read');
  });
});
