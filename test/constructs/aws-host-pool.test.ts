import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TerraformVariable, Testing } from 'cdktf';
// The matchers' types (declare global jest.Matchers) live in the jest adapter module.
import 'cdktf/lib/testing/adapters/jest';
import { AutoscalingGroup } from '@cdktf/provider-aws/lib/autoscaling-group';
import { IamRolePolicy } from '@cdktf/provider-aws/lib/iam-role-policy';
import { LaunchTemplate } from '@cdktf/provider-aws/lib/launch-template';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { S3Object } from '@cdktf/provider-aws/lib/s3-object';
import { VpcSecurityGroupIngressRule } from '@cdktf/provider-aws/lib/vpc-security-group-ingress-rule';
import { checkPlan } from '../../src/contracts/plan';
import { AntiAffinity, AwsHostPool, ProactiveMigration, ShardFleet, ShardedApplication, StaticHostPool, type ShardFleetProps } from '../../constructs';
import { renderAgentUserData } from '../../constructs/aws-agent-user-data';
import { unplacedOnDiscoveredHosts } from '../../constructs/aws-host-pool';
import { placeShards } from '../../policies/initial-placement';
import { synthErrors, testApp, thrown } from './fixture';

Testing.setupJest();

interface Synthesized {
  resource: Record<string, Record<string, Record<string, unknown>>>;
}

/** An etcd the hosts reach: a fleet of EC2 hosts needs one store (see 'refuses a fleet of EC2 hosts ...'). */
const ETCD = { kind: 'etcd', endpoints: ['http://10.0.0.10:2379'] } as const;

function awsFleet(poolProps: ConstructorParameters<typeof AwsHostPool>[2] = {}, withProvider = true, store: ShardFleetProps['store'] = ETCD) {
  const app = testApp();
  const fleet = new ShardFleet(app, 'aws-fleet', { fleet: 'demo', generation: 2, store });
  if (withProvider) new AwsProvider(fleet, 'aws', { region: 'eu-west-1' });
  const pool = new AwsHostPool(fleet, 'ec2', { instanceType: 'm6i.large', minHosts: 2, maxHosts: 4, ...poolProps });
  const web = new ShardedApplication(fleet, 'web', { pool, command: ['/usr/bin/python3', '-m', 'http.server'], granularity: { cpu: '500m', memory: '1GiB' }, shards: { min: 2, initial: 2, max: 4 } });
  return { app, fleet, pool, web };
}

/** `${aws_security_group.<name>.id}` for the only resource of `type`. */
function only(synth: Synthesized, type: string): [string, Record<string, unknown>] {
  const entries = Object.entries(synth.resource[type] ?? {});
  expect(entries).toHaveLength(1);
  return entries[0]!;
}

describe('AwsHostPool', () => {
  it('warns at synth that its hosts get no shards yet, naming the applications — placement uses only the hosts a plan lists, and an AWS pool lists none', () => {
    const { app, fleet, pool } = awsFleet();
    // The fact the warning stands on: every shard of the pool is unplaced.
    const placement = placeShards(fleet.plan());
    expect(placement.assignments).toEqual([]);
    expect(placement.unplaced.map((u) => u.shardId)).toEqual(['web-0', 'web-1']);
    app.synth();
    const warnings = pool.node.metadata.filter((m) => m.type === '@cdktf/warn').map((m) => m.data);
    expect(warnings).toEqual([unplacedOnDiscoveredHosts('ec2', ['web'])]);
    expect(warnings[0]).toContain("the shards of web stay unplaced");
    // A pool without applications has nothing to warn about.
    const empty = testApp();
    const bare = new ShardFleet(empty, 'aws-fleet', { fleet: 'demo', store: ETCD });
    new AwsProvider(bare, 'aws', { region: 'eu-west-1' });
    const idle = new AwsHostPool(bare, 'ec2', { instanceType: 'm6i.large' });
    new ShardedApplication(bare, 'web', { pool: new StaticHostPool(bare, 'local', { hosts: [{ id: 'h1', address: '10.0.0.1', capacity: { cpu: 4, memory: '8GiB' } }] }), command: ['/bin/true'], granularity: { cpu: '500m', memory: '1GiB' } });
    empty.synth();
    expect(idle.node.metadata.filter((m) => m.type === '@cdktf/warn')).toEqual([]);
  });

  it('declares a launch template with the instance type, IMDSv2, the instance profile, the fleet group and agent user data', () => {
    const { fleet, pool } = awsFleet();
    const json = Testing.synth(fleet);
    const synth = JSON.parse(json) as Synthesized;
    const [groupName] = only(synth, 'aws_security_group');
    const [profileName] = only(synth, 'aws_iam_instance_profile');
    expect(json).toHaveResourceWithProperties(LaunchTemplate, {
      instance_type: 'm6i.large',
      iam_instance_profile: { arn: `\${aws_iam_instance_profile.${profileName}.arn}` },
      vpc_security_group_ids: [`\${aws_security_group.${groupName}.id}`],
      metadata_options: { http_endpoint: 'enabled', http_tokens: 'required', http_put_response_hop_limit: 1 },
    });
    const [, template] = only(synth, 'aws_launch_template');
    const userData = template.user_data as string;
    expect(userData.startsWith('${base64encode("#!/bin/bash\\n')).toBe(true);
    const [bucketName] = only(synth, 'aws_s3_bucket');
    expect(userData).toContain(`SHARDFORM_PLAN_S3=s3://\${aws_s3_bucket.${bucketName}.bucket}/shardform/demo/shard-plan.json`);
    // An AWS pool's hosts are not in the plan, so the agent cannot find its address there: it must be told where to listen.
    expect(userData).toContain('ExecStart=/usr/local/bin/shardform agent --plan $SHARDFORM_PLAN_FILE --host $SHARDFORM_HOST_ID --listen $SHARDFORM_LISTEN --state-dir $SHARDFORM_STATE_DIR\\n');
    // The fleet's agent.stateDirectory: the plan file there, each agent's state under its host id.
    expect(userData).toContain('SHARDFORM_PLAN_FILE=/var/lib/shardform/shard-plan.json\\nSHARDFORM_HOST_ID=$INSTANCE_ID\\nSHARDFORM_STATE_DIR=/var/lib/shardform/$INSTANCE_ID\\n');
    expect(userData).toContain('SHARDFORM_LISTEN=:7100\\n');
    expect(userData).toContain('AWS_DEFAULT_REGION=$REGION');
    expect(userData).not.toMatch(/\$\{(?!aws_s3_bucket\.|base64encode\()/);
    expect(json).toHaveResourceWithProperties(AutoscalingGroup, {
      min_size: 2,
      max_size: 4,
      desired_capacity: 2,
      tag: [
        { key: 'shardform:pool', value: 'demo.ec2', propagate_at_launch: true },
        { key: 'shardform:fleet', value: 'demo', propagate_at_launch: true },
        { key: 'Name', value: 'shardform-demo-ec2', propagate_at_launch: true },
      ],
    });
    expect(pool.discoveryTagValue).toBe('demo.ec2');
  });

  it('boots Debian 13 (Node.js 20, CRIU 4), and stops the boot script when a custom image brings an older Node', () => {
    const { fleet } = awsFleet();
    const synth = JSON.parse(Testing.synth(fleet)) as Synthesized & { data: Record<string, Record<string, { filter: { name: string; values: string[] }[] }>> };
    const [ami] = Object.values(synth.data.aws_ami ?? {});
    expect(ami!.filter).toContainEqual({ name: 'name', values: ['debian-13-amd64-*'] });

    const script = renderAgentUserData({ planS3Uri: 's3://b/k', fleet: 'demo', pool: 'ec2', agentPort: 7100, agentPackage: 'shardform@0.1.0', stateDirectory: '/var/lib/shardform' });
    expect(script).toContain('apt-get install -y -q nodejs npm awscli curl criu\n');
    // Run the script's own Node check against a fake `node` of each version.
    const guard = script.split('\n').filter((line) => line.includes('NODE_MAJOR')).join('\n');
    expect(guard).not.toBe('');
    const runGuard = (version: string) => {
      const bin = mkdtempSync(join(tmpdir(), 'fake-node-'));
      try {
        writeFileSync(join(bin, 'node'), `#!/bin/sh\ncase "$1" in --version) echo v${version};; *) echo ${version};; esac\n`, { mode: 0o755 });
        return spawnSync('/bin/bash', ['-euo', 'pipefail', '-c', `${guard}\necho booted`], { env: { PATH: `${bin}:/usr/bin:/bin` }, encoding: 'utf8' });
      } finally {
        rmSync(bin, { recursive: true, force: true });
      }
    };
    // package.json's engines: >= 20.3.
    for (const version of ['18.19.0', '20.2.0', '20.0.0']) {
      const old = runGuard(version);
      expect({ version, status: old.status, stdout: old.stdout }).toEqual({ version, status: 1, stdout: '' });
      expect(old.stderr).toContain(`the agent needs Node.js 20.3 or newer, this image has v${version}`);
    }
    for (const version of ['20.3.0', '20.19.2', '22.11.0', '22.0.0']) {
      const ok = runGuard(version);
      expect({ version, status: ok.status, stdout: ok.stdout }).toEqual({ version, status: 0, stdout: 'booted\n' });
    }
  });

  it('keeps the image the launch template was created with, unless imageId names one', () => {
    // The Debian lookup says "newest" on every plan: followed, hosts launched on later deploys would boot another image.
    const [, looked] = only(JSON.parse(Testing.synth(awsFleet().fleet)) as Synthesized, 'aws_launch_template');
    expect(looked.image_id).toMatch(/^\$\{data\.aws_ami\.[^.]+\.id\}$/);
    expect(looked.lifecycle).toEqual({ ignore_changes: ['image_id'] });
    // An explicit image is the user's decision, and changing it must reach the template.
    const synth = JSON.parse(Testing.synth(awsFleet({ imageId: 'ami-0123456789abcdef0' }).fleet)) as Synthesized & { data?: Record<string, unknown> };
    const [, given] = only(synth, 'aws_launch_template');
    expect(given.image_id).toBe('ami-0123456789abcdef0');
    expect(given).not.toHaveProperty('lifecycle');
    expect(synth.data?.aws_ami).toBeUndefined();
  });

  it('opens the agent port only to members of the fleet\'s own security group', () => {
    const { fleet } = awsFleet();
    const json = Testing.synth(fleet);
    const synth = JSON.parse(json) as Synthesized;
    const [groupName] = only(synth, 'aws_security_group');
    const self = `\${aws_security_group.${groupName}.id}`;
    expect(json).toHaveResourceWithProperties(VpcSecurityGroupIngressRule, {
      security_group_id: self,
      referenced_security_group_id: self,
      ip_protocol: 'tcp',
      from_port: 7100,
      to_port: 7100,
    });
    // The only way in: no address range, no other rule, no inline ingress on the group.
    const [, ingress] = only(synth, 'aws_vpc_security_group_ingress_rule');
    expect(ingress).not.toHaveProperty('cidr_ipv4');
    expect(ingress).not.toHaveProperty('cidr_ipv6');
    expect(synth.resource.aws_security_group_rule).toBeUndefined();
    expect(only(synth, 'aws_security_group')[1]).not.toHaveProperty('ingress');
  });

  it('lets the host role do exactly one thing: s3:GetObject on the plan object', () => {
    const { fleet } = awsFleet();
    const json = Testing.synth(fleet);
    const synth = JSON.parse(json) as Synthesized;
    const [bucketName] = only(synth, 'aws_s3_bucket');
    const [roleName] = only(synth, 'aws_iam_role');
    expect(json).toHaveResourceWithProperties(IamRolePolicy, { role: `\${aws_iam_role.${roleName}.name}` });
    const [, policy] = only(synth, 'aws_iam_role_policy');
    expect(JSON.parse(policy.policy as string)).toEqual({
      Version: '2012-10-17',
      Statement: [{ Sid: 'ReadShardPlan', Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`\${aws_s3_bucket.${bucketName}.arn}/shardform/demo/shard-plan.json`] }],
    });
    expect(synth.resource.aws_iam_role_policy_attachment).toBeUndefined();
    expect(only(synth, 'aws_iam_role')[1]).not.toHaveProperty('managed_policy_arns');
  });

  it('uploads the plan, digest included, as the S3 object body', () => {
    const { fleet } = awsFleet();
    const json = Testing.synth(fleet);
    const plan = fleet.plan();
    expect(json).toHaveResourceWithProperties(S3Object, {
      key: 'shardform/demo/shard-plan.json',
      content: fleet.planJson(),
      content_type: 'application/json',
      metadata: { 'plan-digest': plan.digest, 'plan-generation': '2' },
    });
    const [, object] = only(JSON.parse(json) as Synthesized, 'aws_s3_object');
    expect(JSON.parse(object.content as string).digest).toBe(plan.digest);
  });

  it('uses an existing bucket when given, and grants only its plan object', () => {
    const { fleet } = awsFleet({ planBucket: 'acme-plans' });
    const synth = JSON.parse(Testing.synth(fleet)) as Synthesized;
    expect(synth.resource.aws_s3_bucket).toBeUndefined();
    expect(only(synth, 'aws_s3_object')[1].bucket).toBe('acme-plans');
    expect(JSON.parse(only(synth, 'aws_iam_role_policy')[1].policy as string).Statement[0].Resource).toEqual(['arn:aws:s3:::acme-plans/shardform/demo/shard-plan.json']);
  });

  it('states the pool in the plan as discovered hosts of a derived capacity', () => {
    const { fleet } = awsFleet();
    const plan = fleet.plan();
    expect(checkPlan(plan).ok).toBe(true);
    expect(plan.pools).toEqual([
      {
        id: 'ec2',
        kind: 'aws',
        costPerHourUsd: 0.096,
        labels: {},
        hosts: [],
        // m6i.large: 2 vCPU, 8 GiB, minus the default 250m + 512MiB reserved for the OS and agent.
        hostCapacity: { cpuCores: 1.75, memoryBytes: 8 * 2 ** 30 - 512 * 2 ** 20, readIops: 0, writeIops: 0 },
        discovery: { provider: 'aws', region: 'eu-west-1', tagKey: 'shardform:pool', tagValue: 'demo.ec2', minHosts: 2, maxHosts: 4, desiredHosts: 2, instanceType: 'm6i.large' },
      },
    ]);
  });

  it('validates against the AWS pool: granularity vs instance size, anti-affinity vs maxHosts, unknown region', () => {
    const big = awsFleet();
    new ShardedApplication(big.fleet, 'big', { pool: big.pool, command: ['/bin/true'], granularity: { cpu: 2, memory: '1GiB' } });
    new AntiAffinity(big.fleet, 'apart', { applications: [big.web], mode: 'hard' });
    expect(synthErrors(big.fleet)).toEqual([
      "[aws-fleet/big] big/granularity: cpu 2 cores exceeds the smallest host in pool 'ec2' (1.75 cores); use at most 1.75 cores or move big to another pool",
      "[aws-fleet/big] big/shards.min: 1 shards of 2 cores + 1GiB do not fit pool 'ec2' (7 cores, 30GiB across 4 hosts, shared with the pool's other applications): 1 cannot be placed; lower shards.min to 0 or add capacity",
    ]);
    const crowded = awsFleet({ maxHosts: 2 });
    new ShardedApplication(crowded.fleet, 'more', { pool: crowded.pool, command: ['/bin/true'], granularity: { cpu: '250m', memory: '256MiB' } });
    new AntiAffinity(crowded.fleet, 'apart', { applications: [crowded.web], mode: 'hard' });
    new AntiAffinity(crowded.fleet, 'all-apart', { mode: 'hard' });
    expect(synthErrors(crowded.fleet)).toEqual([
      "[aws-fleet/all-apart] all-apart/scope: hard anti-affinity with scope 'host' needs 3 separate domains for the minimum shards of its applications, but only 2 exist; add hosts, lower shards.min or make the rule soft",
    ]);
    // A region known only at apply time (a variable) cannot go into the plan.
    const nowhere = awsFleet({}, false);
    new AwsProvider(nowhere.fleet, 'aws', { region: new TerraformVariable(nowhere.fleet, 'region', { type: 'string' }).stringValue });
    expect(synthErrors(nowhere.fleet)).toEqual(["[aws-fleet/ec2] ec2/region: is not known; set region or add an AwsProvider with a literal region to the fleet"]);
  });

  it('refuses a fleet of EC2 hosts on the embedded store at synth, naming the pool and the fix', () => {
    // One SQLite file per host: the destination of every migration would refuse it (409 REFUSED).
    const embedded = awsFleet({}, true, { kind: 'embedded' });
    new ProactiveMigration(embedded.fleet, 'hot', { applications: [embedded.web] });
    expect(synthErrors(embedded.fleet)).toEqual([
      "[aws-fleet/ec2] aws-fleet/store: pool 'ec2' runs up to 4 EC2 hosts, and the fleet's store is embedded (\"/var/lib/shardform/store.db\", one file on each host): " +
        "a destination refuses every migration its own store did not journal, so shards of web (checkpoint) can never migrate, and ProactiveMigration 'hot' can never act; " +
        "set the fleet's store to { kind: 'etcd', endpoints: ['http://<etcd reachable from every host>:2379'] }",
    ]);
    // etcd on loopback is a store of each host's own just the same.
    const loopback = awsFleet({}, true, { kind: 'etcd', endpoints: ['http://127.0.0.1:2379', 'http://localhost:2379'] });
    expect(synthErrors(loopback.fleet)).toEqual([
      "[aws-fleet/ec2] aws-fleet/store: pool 'ec2' runs up to 4 EC2 hosts, and every etcd endpoint of the fleet's store is on the host itself (\"http://127.0.0.1:2379\", \"http://localhost:2379\"): " +
        "each host would reach an etcd of its own, so shards of web (checkpoint) can never migrate; set the fleet's store to { kind: 'etcd', endpoints: ['http://<etcd reachable from every host>:2379'] }",
    ]);
    // One EC2 host beside a static pool is two machines too.
    const mixed = awsFleet({ minHosts: 1, maxHosts: 1 }, true, { kind: 'embedded' });
    new StaticHostPool(mixed.fleet, 'local', { hosts: [{ id: 'host-a', address: '10.0.0.5', capacity: { cpu: 2, memory: '4GiB' } }] });
    expect(synthErrors(mixed.fleet)).toEqual([
      "[aws-fleet/ec2] aws-fleet/store: pool 'ec2' runs its EC2 host besides the hosts of pool 'local', and the fleet's store is embedded (\"/var/lib/shardform/store.db\", one file on each host): " +
        "a destination refuses every migration its own store did not journal, so shards of web (checkpoint) can never migrate; set the fleet's store to { kind: 'etcd', endpoints: ['http://<etcd reachable from every host>:2379'] }",
    ]);
  });

  it('accepts the embedded store where nothing can migrate, and etcd the hosts reach', () => {
    expect(synthErrors(awsFleet().fleet)).toEqual([]);
    expect(synthErrors(awsFleet({ minHosts: 1, maxHosts: 1 }, true, { kind: 'embedded' }).fleet)).toEqual([]);
    const app = testApp();
    const empty = new ShardFleet(app, 'aws-fleet', { fleet: 'demo' });
    new AwsProvider(empty, 'aws', { region: 'eu-west-1' });
    new AwsHostPool(empty, 'ec2', { maxHosts: 4 });
    expect(synthErrors(empty)).toEqual([]);
  });

  it('rejects an instance type it cannot size, and conflicting plan buckets, at construction', () => {
    expect(thrown(() => awsFleet({ instanceType: 'x9.huge' }))).toBe(
      'aws-fleet/ec2/instanceType: "x9.huge" has no built-in capacity; give capacity: { cpu, memory } or use one of t3.medium, t3.large, t3.xlarge, m5.large, m5.xlarge, m6i.large, m6i.xlarge, m6i.2xlarge, c6i.large, c6i.xlarge, c6i.2xlarge, r6i.large, r6i.xlarge',
    );
    expect(() => awsFleet({ instanceType: 'x9.huge', capacity: { cpu: 64, memory: '256GiB' } })).not.toThrow();
    const { fleet } = awsFleet({ planBucket: 'acme-plans' });
    expect(thrown(() => new AwsHostPool(fleet, 'second', { planBucket: 'other-plans' }))).toBe(
      'aws-fleet/second/planBucket: "other-plans" differs from the fleet\'s plan bucket "acme-plans"; one plan object serves every AWS pool of a fleet, so give the same bucket or none',
    );
    expect(thrown(() => awsFleet({ minHosts: 3, maxHosts: 2 }))).toBe(
      'aws-fleet/ec2/desiredHosts: {"minHosts":3,"desiredHosts":3,"maxHosts":2} is not ordered; use minHosts <= desiredHosts <= maxHosts',
    );
  });

  it('takes tokens for what only Terraform reads (VPC, subnets, AMI, bucket) and refuses them for what the plan states', () => {
    const app = testApp();
    const fleet = new ShardFleet(app, 'aws-fleet', { fleet: 'demo', store: ETCD });
    new AwsProvider(fleet, 'aws', { region: 'eu-west-1' });
    const text = (name: string) => new TerraformVariable(fleet, name, { type: 'string' }).stringValue;
    const pool = new AwsHostPool(fleet, 'ec2', { vpcId: text('vpc'), subnetIds: [text('subnet')], imageId: text('ami'), planBucket: text('bucket') });
    new ShardedApplication(fleet, 'web', { pool, command: ['/bin/sleep', 'infinity'], granularity: { cpu: '500m', memory: '1GiB' } });
    expect(synthErrors(fleet)).toEqual([]);
    const minHosts = new TerraformVariable(fleet, 'min', { type: 'number' }).numberValue;
    expect(thrown(() => new AwsHostPool(fleet, 'more', { minHosts, planBucket: text('bucket-2') })).replace(/TOKEN\.\d+/, 'TOKEN.n')).toBe(
      'aws-fleet/more/minHosts: "${TfToken[TOKEN.n]}" is an unresolved cdktf token (a TerraformVariable, a resource attribute, Fn.*); agents read the plan as written, so give a literal value known at synth',
    );
  });

  it("boots its agents with the fleet's agent.stateDirectory, refusing a path that cannot go unquoted into the boot script", () => {
    const app = testApp();
    const fleet = new ShardFleet(app, 'aws-fleet', { fleet: 'demo', store: ETCD, agent: { stateDirectory: '/srv/shardform' } });
    new AwsProvider(fleet, 'aws', { region: 'eu-west-1' });
    new AwsHostPool(fleet, 'ec2', { instanceType: 'm6i.large' });
    const [, template] = only(JSON.parse(Testing.synth(fleet)) as Synthesized, 'aws_launch_template');
    expect(template.user_data).toContain('SHARDFORM_PLAN_FILE=/srv/shardform/shard-plan.json\\n');
    expect(template.user_data).toContain('SHARDFORM_STATE_DIR=/srv/shardform/$INSTANCE_ID\\n');
    const spaced = new ShardFleet(testApp(), 'aws-fleet', { fleet: 'demo', store: ETCD, agent: { stateDirectory: '/srv/shard form' } });
    new AwsProvider(spaced, 'aws', { region: 'eu-west-1' });
    expect(thrown(() => new AwsHostPool(spaced, 'ec2', { instanceType: 'm6i.large' }))).toBe(
      `aws-fleet/ec2/agent.stateDirectory: "/srv/shard form" is the fleet's; an AwsHostPool's hosts get it unquoted in their boot script and systemd unit, so use a plain absolute path (letters, digits, . _ - /)`,
    );
  });

  it('matches the snapshot of a whole small stack', () => {
    const { fleet } = awsFleet();
    expect(Testing.synth(fleet)).toMatchSnapshot();
  });
});
