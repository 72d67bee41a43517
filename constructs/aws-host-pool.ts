/**
 * EC2 hosts for a fleet: a launch template and an auto scaling group whose instances join the
 * fleet's security group (agent port open to members only), run with a role that may read only
 * the plan object, and boot into the agent with the plan's S3 location. The plan lists no hosts
 * for this pool; agents discover each other by the auto scaling group's tag.
 */
import { Annotations, Aspects, Fn, Token } from 'cdktf';
import type { Construct } from 'constructs';
import { AutoscalingGroup } from '@cdktf/provider-aws/lib/autoscaling-group';
import { DataAwsAmi } from '@cdktf/provider-aws/lib/data-aws-ami';
import { DataAwsSubnets } from '@cdktf/provider-aws/lib/data-aws-subnets';
import { IamInstanceProfile } from '@cdktf/provider-aws/lib/iam-instance-profile';
import { IamRole } from '@cdktf/provider-aws/lib/iam-role';
import { LaunchTemplate } from '@cdktf/provider-aws/lib/launch-template';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import type { Capacity, Pool } from '../src/contracts/plan-schema';
import type { Quantity } from '../src/contracts/quantities';
import { AgentSecurityGroup } from './agent-security-group';
import { PLAIN_PATH, renderAgentUserData } from './aws-agent-user-data';
import { INSTANCE_TYPES, instanceTypeFacts } from './aws-instance-types';
import { parseCapacity, type HostCapacity } from './host-capacity';
import { HostPool, type HostPoolProps } from './host-pool';
import { PlanObject } from './plan-object';
import { problemAt } from './prop-checks';
import { sharedStoreProblem } from './shared-store';

export interface AwsHostPoolProps extends HostPoolProps {
  /**
   * EC2 instance type of every host (a literal: the plan states it).
   * @default 'm6i.large'
   */
  readonly instanceType?: string;
  /**
   * What one host offers to shards.
   * @default the instance type's vCPUs and memory (from a built-in table) minus `reserved`
   */
  readonly capacity?: HostCapacity;
  /**
   * Kept back from a derived capacity for the OS and the agent itself.
   * @default { cpu: '250m', memory: '512MiB' }
   */
  readonly reserved?: { readonly cpu: Quantity; readonly memory: Quantity };
  /** Fewest hosts the auto scaling group keeps. @default 1 */
  readonly minHosts?: number;
  /** Most hosts the auto scaling group may run. @default the larger of minHosts and 3 */
  readonly maxHosts?: number;
  /** Hosts started on deploy. @default minHosts */
  readonly desiredHosts?: number;
  /**
   * AWS region of the hosts (agents discover peers there).
   * @default the region of the fleet's AwsProvider
   */
  readonly region?: string;
  /**
   * Existing bucket to upload the plan to (one plan object per fleet; every AWS pool of a
   * fleet must name the same bucket or none).
   * @default a new private bucket
   */
  readonly planBucket?: string;
  /** VPC of the fleet's security group. @default the region's default VPC */
  readonly vpcId?: string;
  /** Subnets the auto scaling group launches into. @default every subnet of the VPC */
  readonly subnetIds?: string[];
  /**
   * AMI of every host of the pool. Changing it changes the image of hosts launched afterwards
   * only: hosts already running keep theirs until they are replaced, and until then a checkpoint
   * migration between an old and a new host may fail on restore (CRIU refuses file-backed
   * mappings whose files differ).
   * @default the latest Debian 13 amd64 AMI published by Debian (owner 136693071363) when the
   *   launch template is created, then kept (the launch template ignores later changes of the
   *   lookup), so hosts launched on later deploys boot the same image. Node.js 20 and CRIU 4 come
   *   from its own packages. Another image must bring Node.js >= 20.3 and `apt-get`.
   */
  readonly imageId?: string;
  /**
   * npm package spec the user data installs the agent from (`shardform@0.1.0`, a tarball URL).
   * @default 'shardform@0.1.0'
   */
  readonly agentPackage?: string;
}

const REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;
const PACKAGE_SPEC = /^[A-Za-z0-9@._/:~^+=-]{1,214}$/;
/** Tag key agents find their peers by; the value is `<fleet>.<pool>`. */
export const DISCOVERY_TAG_KEY = 'shardform:pool';

export class AwsHostPool extends HostPool {
  readonly launchTemplate: LaunchTemplate;
  readonly autoScalingGroup: AutoscalingGroup;
  readonly role: IamRole;
  readonly instanceProfile: IamInstanceProfile;
  readonly securityGroup: AgentSecurityGroup;
  readonly planObject: PlanObject;
  private readonly instanceType: string;
  private readonly hostCapacity: Capacity | undefined;
  private readonly hosts: { min: number; max: number; desired: number };
  private readonly givenRegion: string | undefined;

  constructor(scope: Construct, id: string, props: AwsHostPoolProps = {}) {
    const instanceType = props.instanceType ?? 'm6i.large';
    super(scope, id, props, instanceTypeFacts(instanceType)?.usdPerHour ?? 0, ['planBucket', 'vpcId', 'subnetIds', 'imageId']);
    const checks = this.checks;
    this.instanceType = instanceType;
    const known = typeof instanceType === 'string' && !Token.isUnresolved(instanceType) && instanceTypeFacts(instanceType) !== undefined;
    if (typeof instanceType !== 'string' || Token.isUnresolved(instanceType))
      checks.fail('instanceType', instanceType, "is not a literal instance type; the plan states it, so use a string such as 'm6i.large'");
    let capacity: Capacity | undefined;
    if (props.capacity !== undefined) capacity = parseCapacity(checks, 'capacity', props.capacity);
    else if (!known)
      checks.fail('instanceType', instanceType, `has no built-in capacity; give capacity: { cpu, memory } or use one of ${Object.keys(INSTANCE_TYPES).join(', ')}`);
    else {
      const facts = instanceTypeFacts(instanceType)!;
      const reserved = props.reserved ?? { cpu: '250m', memory: '512MiB' };
      const cpu = checks.cpu('reserved.cpu', reserved.cpu, false);
      const memory = checks.bytes('reserved.memory', reserved.memory, false);
      if (cpu !== undefined && memory !== undefined) {
        const derived = { cpuCores: Math.round((facts.vcpus - cpu) * 1000) / 1000, memoryBytes: facts.memoryGiB * 2 ** 30 - memory, readIops: 0, writeIops: 0 };
        if (checks.require(derived.cpuCores > 0 && derived.memoryBytes > 0, 'reserved', reserved, `leaves nothing of a ${instanceType} (${facts.vcpus} vCPU, ${facts.memoryGiB}GiB); reserve less`)) capacity = derived;
      }
    }
    const min = checks.integer('minHosts', props.minHosts ?? 1, 0);
    const max = checks.integer('maxHosts', props.maxHosts ?? Math.max(props.minHosts ?? 1, 3), 1);
    const desired = checks.integer('desiredHosts', props.desiredHosts ?? props.minHosts ?? 1, 0);
    if (min !== undefined && max !== undefined && desired !== undefined && !(min <= desired && desired <= max))
      checks.fail('desiredHosts', { minHosts: min, desiredHosts: desired, maxHosts: max }, 'is not ordered; use minHosts <= desiredHosts <= maxHosts');
    if (props.region !== undefined) checks.require(REGION.test(props.region), 'region', props.region, "is not an AWS region; use e.g. 'eu-west-1'");
    const agentPackage = props.agentPackage ?? 'shardform@0.1.0';
    checks.require(PACKAGE_SPEC.test(agentPackage), 'agentPackage', agentPackage, "is not an npm package spec; use e.g. 'shardform@0.1.0' or a tarball URL");
    const existingPlan = this.fleet.node.tryFindChild('plan-object');
    if (existingPlan instanceof PlanObject && existingPlan.givenBucket !== props.planBucket)
      checks.fail('planBucket', props.planBucket, `differs from the fleet's plan bucket ${JSON.stringify(existingPlan.givenBucket ?? '(created by Shardform)')}; one plan object serves every AWS pool of a fleet, so give the same bucket or none`);
    const existingGroup = this.fleet.node.tryFindChild('agent-security-group');
    if (existingGroup instanceof AgentSecurityGroup && props.vpcId !== undefined && existingGroup.givenVpcId !== props.vpcId)
      checks.fail('vpcId', props.vpcId, `differs from the VPC of the fleet's security group ${JSON.stringify(existingGroup.givenVpcId ?? '(default VPC)')}; every AWS pool of a fleet shares one group`);
    // The fleet's prop, but this pool is what puts it into a boot script.
    const stateDirectory = this.fleet.agentStateDirectory;
    checks.require(PLAIN_PATH.test(stateDirectory), 'agent.stateDirectory', stateDirectory, `is the fleet's; an AwsHostPool's hosts get it unquoted in their boot script and systemd unit, so use a plain absolute path (letters, digits, . _ - /)`);
    checks.throwIfAny();
    this.hostCapacity = capacity;
    this.hosts = { min: min!, max: max!, desired: desired! };
    this.givenRegion = props.region;

    this.planObject = PlanObject.forFleet(this.fleet, { bucket: props.planBucket });
    this.securityGroup = AgentSecurityGroup.forFleet(this.fleet, props.vpcId);
    this.role = new IamRole(this, 'role', {
      namePrefix: `shardform-${id}-`.slice(0, 38),
      description: `Shardform hosts of pool ${id} in fleet ${this.fleet.fleetName}: read the plan object only`,
      assumeRolePolicy: JSON.stringify({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' }],
      }),
    });
    this.planObject.grantRead(this.role);
    this.instanceProfile = new IamInstanceProfile(this, 'instance-profile', { namePrefix: `shardform-${id}-`.slice(0, 38), role: this.role.name });

    const imageId =
      props.imageId ??
      new DataAwsAmi(this, 'debian', {
        mostRecent: true,
        owners: ['136693071363'],
        filter: [
          { name: 'name', values: ['debian-13-amd64-*'] },
          { name: 'architecture', values: ['x86_64'] },
        ],
      }).id;
    const subnetIds =
      props.subnetIds ?? new DataAwsSubnets(this, 'subnets', { filter: [{ name: 'vpc-id', values: [this.securityGroup.vpcId] }] }).ids;
    const tagValue = this.discoveryTagValue;
    this.launchTemplate = new LaunchTemplate(this, 'launch-template', {
      namePrefix: `shardform-${this.fleet.fleetName}-${id}-`,
      imageId,
      instanceType,
      iamInstanceProfile: { arn: this.instanceProfile.arn },
      vpcSecurityGroupIds: [this.securityGroup.groupId],
      // IMDSv2 only: the role's credentials are not reachable by a forged GET (SSRF) from a shard.
      metadataOptions: { httpEndpoint: 'enabled', httpTokens: 'required', httpPutResponseHopLimit: 1 },
      userData: Fn.base64encode(
        renderAgentUserData({
          planS3Uri: this.planObject.s3Uri,
          fleet: this.fleet.fleetName,
          pool: id,
          agentPort: this.fleet.agentPort,
          agentPackage,
          stateDirectory: this.fleet.agentStateDirectory,
        }),
      ),
      updateDefaultVersion: true,
      // The lookup answers "newest" anew on every plan: without this, a deploy after Debian
      // published an image moves the template to it, and the group launches new hosts on it
      // beside hosts of the old one, where checkpoints restore only sometimes. The image is taken
      // once, when the template is created; setting imageId is how it changes (and is never ignored).
      ...(props.imageId === undefined ? { lifecycle: { ignoreChanges: ['image_id'] } } : {}),
      tagSpecifications: [{ resourceType: 'instance', tags: { [DISCOVERY_TAG_KEY]: tagValue, 'shardform:fleet': this.fleet.fleetName } }],
    });
    this.autoScalingGroup = new AutoscalingGroup(this, 'hosts', {
      namePrefix: `shardform-${this.fleet.fleetName}-${id}-`,
      minSize: this.hosts.min,
      maxSize: this.hosts.max,
      desiredCapacity: this.hosts.desired,
      vpcZoneIdentifier: subnetIds,
      launchTemplate: { id: this.launchTemplate.id, version: '$Latest' },
      tag: [
        { key: DISCOVERY_TAG_KEY, value: tagValue, propagateAtLaunch: true },
        { key: 'shardform:fleet', value: this.fleet.fleetName, propagateAtLaunch: true },
        { key: 'Name', value: `shardform-${this.fleet.fleetName}-${id}`, propagateAtLaunch: true },
      ],
    });
    this.node.addValidation({ validate: () => (this.region ? [] : [problemAt(this, 'region', "is not known; set region or add an AwsProvider with a literal region to the fleet")]) });
    // Reported at the pool, about the fleet's prop: the pool is what makes the fleet span machines.
    this.node.addValidation({
      validate: () => {
        const problem = sharedStoreProblem({ poolId: this.poolId, maxHosts: this.hosts.max }, this.fleet.analysis());
        return problem ? [problemAt(this.fleet, 'store', problem)] : [];
      },
    });
    // Said at every synth (`cdktf synth` prints it), not refused: the infrastructure is real and
    // the gap is the agents', which a later version closes without a change to this code.
    Aspects.of(this).add({
      visit: (node) => {
        if (node !== this) return;
        const placed = this.fleet.analysis().plan.applications.filter((a) => a.pool === this.poolId).map((a) => a.id);
        if (placed.length > 0) Annotations.of(this).addWarning(unplacedOnDiscoveredHosts(this.poolId, placed));
      },
    });
  }

  /** The tag value agents of this pool carry: `<fleet>.<pool>`. */
  get discoveryTagValue(): string {
    return `${this.fleet.fleetName}.${this.poolId}`;
  }

  /** The region: the prop, else the fleet's AwsProvider's literal region. */
  get region(): string | undefined {
    if (this.givenRegion) return this.givenRegion;
    const provider = this.fleet.node.findAll().find((c): c is AwsProvider => c instanceof AwsProvider);
    const region = provider?.region;
    return region !== undefined && !Token.isUnresolved(region) ? region : undefined;
  }

  toPlanPool(): Pool {
    return {
      id: this.poolId,
      kind: 'aws',
      costPerHourUsd: this.costPerHourUsd,
      labels: { ...this.labels },
      hosts: [],
      ...(this.hostCapacity ? { hostCapacity: { ...this.hostCapacity } } : {}),
      discovery: {
        provider: 'aws',
        // Empty when unknown: the schema rejects it and the region validation says why.
        region: this.region ?? '',
        tagKey: DISCOVERY_TAG_KEY,
        tagValue: this.discoveryTagValue,
        minHosts: this.hosts.min,
        maxHosts: this.hosts.max,
        desiredHosts: this.hosts.desired,
        instanceType: this.instanceType,
      },
    };
  }
}

/**
 * Why shards of an AWS pool do not run yet: the plan lists no host for a pool of discovered
 * hosts, and initial placement (policies/initial-placement.ts) places only on listed hosts.
 * Agents would register themselves in the shared store and assignments be written there once
 * (a coordinator's job): not built yet, see docs/constructs.md.
 */
export function unplacedOnDiscoveredHosts(poolId: string, applicationIds: readonly string[]): string {
  return (
    `pool '${poolId}': shards are not placed on the EC2 hosts of an AWS pool yet (the plan lists no host for it, and ` +
    `placement uses only listed hosts), so the shards of ${applicationIds.join(', ')} stay unplaced and the agents there run nothing; ` +
    `until discovered hosts are placed, list the instances in a StaticHostPool (docs/constructs.md, "AWS pools: what works today")`
  );
}
