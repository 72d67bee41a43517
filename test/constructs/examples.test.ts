/**
 * The examples run: each cdktf app (main.ts, the `npm start` fleet, and examples/aws/main.ts) is
 * run as `cdktf synth` runs it (its cdktf.json `app` command, in its directory, with the output
 * directory in CDKTF_OUTDIR), and what it writes is a valid plan and a Terraform stack.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkPlan } from '../../src/contracts/plan';
import { runCli } from '../helpers/cli';

const ROOT = join(__dirname, '..', '..');

function synthExample(dir: string): { out: string; status: number | null; stderr: string } {
  const { app } = JSON.parse(readFileSync(join(dir, 'cdktf.json'), 'utf8')) as { app: string };
  const out = mkdtempSync(join(tmpdir(), 'shardform-example-'));
  const [command, ...args] = app.split(' ');
  const result = spawnSync(command!, args, { cwd: dir, env: { ...process.env, CDKTF_OUTDIR: out, CHECKPOINT_DISABLE: '1' }, encoding: 'utf8', timeout: 120_000 });
  return { out, status: result.status, stderr: result.stderr };
}

describe('the examples', () => {
  const outs: string[] = [];
  afterAll(() => outs.forEach((out) => rmSync(out, { recursive: true, force: true })));

  it.each([
    ['main.ts (npm start)', ROOT, 'local-fleet', 3, []],
    ['examples/aws/main.ts', join(ROOT, 'examples', 'aws'), 'aws-fleet', 0, ['aws_autoscaling_group', 'aws_iam_instance_profile', 'aws_iam_role', 'aws_iam_role_policy', 'aws_launch_template', 'aws_s3_bucket', 'aws_s3_bucket_public_access_block', 'aws_s3_object', 'aws_security_group', 'aws_vpc_security_group_egress_rule', 'aws_vpc_security_group_ingress_rule']],
  ])('%s synthesizes a valid plan and its stack', async (_name, dir, stack, hosts, resources) => {
    const { out, status, stderr } = synthExample(dir);
    outs.push(out);
    expect({ status, stderr }).toEqual({ status: 0, stderr: '' });
    const planFile = join(out, 'stacks', stack, 'shard-plan.json');
    const check = checkPlan(JSON.parse(readFileSync(planFile, 'utf8')));
    expect(check.ok ? [] : check.errors).toEqual([]);
    if (!check.ok) return;
    expect(check.plan.applications.map((a) => a.id).sort()).toEqual(['cache', 'web', 'worker']);
    expect(check.plan.pools.flatMap((p) => p.hosts ?? [])).toHaveLength(hosts);
    const terraform = JSON.parse(readFileSync(join(out, 'stacks', stack, 'cdk.tf.json'), 'utf8')) as { resource?: Record<string, unknown> };
    expect(Object.keys(terraform.resource ?? {}).sort()).toEqual(resources);
    // The second half of `npm start`: the plan it shows.
    const shown = await runCli('plan', 'show', planFile);
    expect(shown).toMatchObject({ code: 0, stderr: '' });
    expect(shown.stdout).toContain('web');
  }, 180_000);
});
