/**
 * The fleet's own security group on AWS: every AWS host of the fleet is a member, and the agent
 * port is open only to other members (a self-referencing rule), never to an address range.
 * One per fleet, so agents in different AWS pools of the fleet can still migrate shards between them.
 */
import { Construct } from 'constructs';
import { DataAwsVpc } from '@cdktf/provider-aws/lib/data-aws-vpc';
import { SecurityGroup } from '@cdktf/provider-aws/lib/security-group';
import { VpcSecurityGroupEgressRule } from '@cdktf/provider-aws/lib/vpc-security-group-egress-rule';
import { VpcSecurityGroupIngressRule } from '@cdktf/provider-aws/lib/vpc-security-group-ingress-rule';
import type { FleetScope } from './fleet-context';

const ID = 'agent-security-group';

export class AgentSecurityGroup extends Construct {
  /** The fleet's group, created on first use in `vpcId` (default: the region's default VPC). */
  static forFleet(fleet: FleetScope, vpcId: string | undefined): AgentSecurityGroup {
    const existing = fleet.node.tryFindChild(ID);
    if (existing instanceof AgentSecurityGroup) return existing;
    return new AgentSecurityGroup(fleet, ID, fleet, vpcId);
  }

  readonly securityGroup: SecurityGroup;
  /** The VPC given by the first pool, if any (other pools must use the same). */
  readonly givenVpcId: string | undefined;
  readonly vpcId: string;

  private constructor(scope: Construct, id: string, fleet: FleetScope, vpcId: string | undefined) {
    super(scope, id);
    this.givenVpcId = vpcId;
    this.vpcId = vpcId ?? new DataAwsVpc(this, 'default-vpc', { default: true }).id;
    this.securityGroup = new SecurityGroup(this, 'group', {
      namePrefix: `shardform-${fleet.fleetName}-`,
      description: `Shardform fleet ${fleet.fleetName}: agents reach each other on port ${fleet.agentPort}`,
      vpcId: this.vpcId,
      tags: { 'shardform:fleet': fleet.fleetName },
    });
    new VpcSecurityGroupIngressRule(this, 'agent-port-from-fleet', {
      securityGroupId: this.securityGroup.id,
      referencedSecurityGroupId: this.securityGroup.id,
      ipProtocol: 'tcp',
      fromPort: fleet.agentPort,
      toPort: fleet.agentPort,
      description: 'Shardform agent API and migration streams, from members of this fleet only',
    });
    // Terraform removes AWS's default allow-all egress; agents need it for packages, S3 and peers.
    new VpcSecurityGroupEgressRule(this, 'egress', {
      securityGroupId: this.securityGroup.id,
      ipProtocol: '-1',
      cidrIpv4: '0.0.0.0/0',
      description: 'Package installs, S3 plan downloads and connections to other agents',
    });
  }

  /** The group's id (a Terraform reference). */
  get groupId(): string {
    return this.securityGroup.id;
  }
}
