import { writeFileSync, renameSync, readFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { memoryLogDestination, createLogger } from '../../../host-agent/log';
import { AgentMetrics } from '../../../host-agent/metrics/agent-metrics';
import { FilePlanFetcher } from '../../../host-agent/plan-source/file-plan-fetcher';
import { lastGoodPlanPath } from '../../../host-agent/plan-source/last-good-plan';
import { PlanSource } from '../../../host-agent/plan-source/plan-source';
import { serializePlan } from '../../../src/contracts/plan';
import type { Plan } from '../../../src/contracts/plan-schema';
import type { FieldError } from '../../../src/errors';
import { tempDir } from '../../helpers/cli';
import { examplePlan } from '../../helpers/plan-fixture';

const at = new Date('2026-11-25T02:00:00Z');

function setup(options: { poll?: number; watch?: boolean } = {}) {
  const dir = tempDir('plan-source');
  const planFile = join(dir.path, 'plan.json');
  const stateDir = join(dir.path, 'state');
  const logs = memoryLogDestination();
  const logger = createLogger({ level: 'debug', destination: logs });
  const metrics = new AgentMetrics({ processMetrics: false });
  const write = (plan: Plan | string) => {
    // Replace the file the way editors and CI do (write aside, rename over), so the inode changes.
    const temp = `${planFile}.tmp`;
    writeFileSync(temp, typeof plan === 'string' ? plan : serializePlan(plan));
    renameSync(temp, planFile);
  };
  const fetchers: FilePlanFetcher[] = [];
  const source = () => new PlanSource({ fetcher: fetchers[fetchers.push(new FilePlanFetcher(planFile)) - 1], stateDir, logger, metrics, clock: () => at, pollIntervalSeconds: options.poll ?? 0, watch: options.watch ?? false });
  return { dir, planFile, stateDir, logs, metrics, write, source, fetchers };
}

const generation = (n: number, edit: (p: Plan) => void = () => {}) => examplePlan((p) => {
  p.generation = n;
  edit(p as Plan);
});

describe('PlanSource (file)', () => {
  let s: ReturnType<typeof setup>;
  afterEach(() => s.dir.remove());

  it('applies the plan at start and persists it as the last good plan', async () => {
    s = setup();
    s.write(generation(1));
    const source = s.source();
    const judgement = await source.start();
    expect(judgement.kind).toBe('accept');
    expect(source.current()?.generation).toBe(1);
    expect(JSON.parse(readFileSync(lastGoodPlanPath(s.stateDir), 'utf8')).digest).toBe(generation(1).digest);
    expect(source.status()).toMatchObject({ running: { generation: 1, from: 'source' }, rejectedTotal: 0 });
    await source.stop();
  });

  it('load() judges the plan without writing; start() then saves it as the last good plan', async () => {
    s = setup();
    s.write(generation(1));
    const source = s.source();
    expect((await source.load()).kind).toBe('accept');
    expect(source.current()?.generation).toBe(1);
    expect(existsSync(s.stateDir)).toBe(false);
    expect((await source.start()).kind).toBe('accept');
    expect(JSON.parse(readFileSync(lastGoodPlanPath(s.stateDir), 'utf8')).digest).toBe(generation(1).digest);
    await source.stop();
  });

  it('applies a higher generation when the file changes and tells listeners', async () => {
    s = setup();
    s.write(generation(1));
    const source = s.source();
    await source.start();
    const seen: number[] = [];
    source.onPlan((plan) => seen.push(plan.generation));
    s.write(generation(2, (p) => (p.applications[0].shards.initial = 1)));
    expect((await source.check()).kind).toBe('accept');
    expect(seen).toEqual([2]);
    expect(source.current()?.generation).toBe(2);
    expect(await s.metrics.text()).toContain('shardform_plan_generation 2');
    expect((await source.check()).kind).toBe('unchanged');
    await source.stop();
  });

  it('refuses a plan whose generation goes backwards and keeps the running one, with the reason in status, log and metric', async () => {
    s = setup();
    s.write(generation(3));
    const source = s.source();
    await source.start();
    s.write(generation(2, (p) => (p.applications[0].shards.initial = 1)));
    const judgement = await source.check();
    expect(judgement).toMatchObject({ kind: 'reject', rejection: { reason: 'generation-backwards', generation: 2 } });
    expect(source.current()?.generation).toBe(3);
    expect(source.status().lastRejection).toMatchObject({
      reason: 'generation-backwards',
      errors: [{ field: 'generation', value: 2, message: 'is lower than the running generation 3; agents never go backwards' }],
      at: '2026-11-25T02:00:00.000Z',
    });
    expect(await s.metrics.text()).toContain('shardform_plan_rejected_total{reason="generation-backwards"} 1');
    expect(s.logs.lines()).toContainEqual(expect.objectContaining({ level: 'warn', reason: 'generation-backwards', generation: 3, rejected_generation: 2 }));
    await source.stop();
  });

  it('refuses changed content under the same generation', async () => {
    s = setup();
    s.write(generation(1));
    const source = s.source();
    await source.start();
    s.write(generation(1, (p) => (p.applications[0].shards.initial = 1)));
    expect(await source.check()).toMatchObject({ kind: 'reject', rejection: { reason: 'generation-not-increased' } });
    expect(source.current()?.digest).toBe(generation(1).digest);
    await source.stop();
  });

  it('refuses a plan that fails the schema, names the field, and reports it once however often it is polled', async () => {
    s = setup();
    s.write(generation(1));
    const source = s.source();
    await source.start();
    const bad = JSON.parse(serializePlan(generation(2))) as Record<string, unknown>;
    (bad.agent as Record<string, unknown>).sampleIntervalSeconds = -1;
    s.write(JSON.stringify(bad));
    const judgement = await source.check();
    expect(judgement).toMatchObject({ kind: 'reject', rejection: { reason: 'invalid', generation: 2 } });
    expect(source.status().lastRejection?.errors).toContainEqual(expect.objectContaining({ field: 'agent.sampleIntervalSeconds', value: -1 }));
    expect(source.status().lastRejection?.message).toContain('agent.sampleIntervalSeconds: must be >= 0.1 (got -1)');
    expect((await source.check()).kind).toBe('unchanged');
    s.fetchers[0].forget();
    expect((await source.check()).kind).toBe('reject');
    expect(source.current()?.generation).toBe(1);
    expect(source.status().rejectedTotal).toBe(1);
    expect(await s.metrics.text()).toContain('shardform_plan_rejected_total{reason="invalid"} 1');
    await source.stop();
  });

  it('refuses text that is not JSON and a plan whose digest does not match its content', async () => {
    s = setup();
    s.write(generation(1));
    const source = s.source();
    await source.start();
    s.write('{"apiVersion": ');
    expect(await source.check()).toMatchObject({ kind: 'reject', rejection: { reason: 'invalid', errors: [{ field: '(root)' }] } });
    const tampered = { ...generation(2), generation: 5 };
    s.write(JSON.stringify(tampered));
    expect(await source.check()).toMatchObject({ kind: 'reject', rejection: { reason: 'invalid', errors: [expect.objectContaining({ field: 'digest' })] } });
    expect(source.current()?.generation).toBe(1);
    await source.stop();
  });

  it('keeps running when the file disappears, reporting it as unreadable', async () => {
    s = setup();
    s.write(generation(1));
    const source = s.source();
    await source.start();
    renameSync(s.planFile, `${s.planFile}.gone`);
    expect(await source.check()).toMatchObject({ kind: 'reject', rejection: { reason: 'unreadable', message: expect.stringContaining('ENOENT') } });
    expect(source.current()?.generation).toBe(1);
    await source.stop();
  });

  it('starts from the last good plan after a restart and refuses an older plan the source still serves', async () => {
    s = setup();
    s.write(generation(4));
    const first = s.source();
    await first.start();
    await first.stop();
    s.write(generation(3));
    const second = s.source();
    const judgement = await second.start();
    expect(judgement).toMatchObject({ kind: 'reject', rejection: { reason: 'generation-backwards', generation: 3 } });
    expect(second.current()?.generation).toBe(4);
    expect(second.status().running).toMatchObject({ generation: 4, from: 'state-dir' });
    await second.stop();
  });

  it('has no plan at all when the first one is bad and none was saved', async () => {
    s = setup();
    s.write('not a plan');
    const source = s.source();
    expect((await source.start()).kind).toBe('reject');
    expect(source.current()).toBeUndefined();
    expect(existsSync(lastGoodPlanPath(s.stateDir))).toBe(false);
    await source.stop();
  });

  it('judges a plan refused as unusable here again at every check, so fixing the host is enough to apply it', async () => {
    s = setup();
    s.write(generation(1));
    const source = s.source();
    await source.start();
    let problem: FieldError | undefined = { field: 'security.tokenFile', message: 'security.tokenFile: cannot read /etc/shardform/token: ENOENT', value: '/etc/shardform/token' };
    source.requireUsableHere(() => problem);
    s.write(generation(2, (p) => (p.applications[0].shards.initial = 1)));
    expect(await source.check()).toMatchObject({ kind: 'reject', rejection: { reason: 'unusable-here', generation: 2 } });
    expect(await source.check()).toMatchObject({ kind: 'reject', rejection: { reason: 'unusable-here', generation: 2 } });
    problem = undefined; // the operator put the token file in place; the plan file is untouched
    expect((await source.check()).kind).toBe('accept');
    expect(source.current()?.generation).toBe(2);
    expect(source.status().rejectedTotal).toBe(1);
    await source.stop();
  });

  it('refuses a plan it cannot save as the last good plan, saying why, and applies it at a check once it can', async () => {
    s = setup();
    s.write(generation(1));
    const source = s.source();
    await source.start();
    // The state directory cannot take the file (as on a full or read-only disk): rename(2) over a directory fails.
    const saved = lastGoodPlanPath(s.stateDir);
    rmSync(saved);
    mkdirSync(join(saved, 'in-the-way'), { recursive: true });
    s.write(generation(2, (p) => (p.applications[0].shards.initial = 1)));
    expect(await source.check()).toMatchObject({
      kind: 'reject',
      rejection: { reason: 'unusable-here', generation: 2, errors: [{ field: '--state-dir', value: saved, message: expect.stringContaining('EISDIR') }] },
    });
    expect(source.current()?.generation).toBe(1);
    expect(s.logs.lines()).toContainEqual(expect.objectContaining({ level: 'warn', reason: 'unusable-here', rejected_generation: 2 }));
    expect(readdirSync(s.stateDir)).toEqual(['last-good-plan.json']); // no temporary file left per try
    rmSync(saved, { recursive: true });
    expect((await source.check()).kind).toBe('accept');
    expect(source.current()?.generation).toBe(2);
    expect(JSON.parse(readFileSync(saved, 'utf8')).generation).toBe(2);
    await source.stop();
  });

  it.each([
    ['file events', { poll: 0, watch: true }],
    ['the periodic check', { poll: 0.05, watch: false }],
  ])('notices a replaced file by itself through %s', async (_how, options) => {
    s = setup(options);
    s.write(generation(1));
    const source = s.source();
    await source.start();
    const applied = new Promise<number>((resolve) => source.onPlan((plan) => resolve(plan.generation)));
    s.write(generation(2, (p) => (p.applications[0].shards.initial = 1)));
    expect(await applied).toBe(2);
    await source.stop();
  });
});
