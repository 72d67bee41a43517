/**
 * Cost-aware placement: pack shards onto the cheapest hosts that still meet predicted demand,
 * keeping `headroom` free on each, and only move a shard for cost when it saves enough.
 */
import type { Construct } from 'constructs';
import type { Policy } from '../src/contracts/plan-schema';
import { ShardPolicy, type ShardPolicyProps } from './shard-policy';

export interface CostAwarePlacementProps extends ShardPolicyProps {
  /**
   * Fraction of every host's capacity kept free when packing for cost. In [0, 1).
   * @default 0.1
   */
  readonly headroom?: number;
  /**
   * Only move a shard for cost if the move saves at least this much per hour, in USD.
   * @default 0.01
   */
  readonly minSavingsPerHour?: number;
}

export class CostAwarePlacement extends ShardPolicy {
  private readonly headroom: number;
  private readonly minSavingsPerHourUsd: number;

  constructor(scope: Construct, id: string, props: CostAwarePlacementProps = {}) {
    super(scope, id, props);
    const headroom = props.headroom ?? 0.1;
    this.checks.require(typeof headroom === 'number' && headroom >= 0 && headroom < 1, 'headroom', headroom, 'is outside [0, 1); use e.g. 0.1 (keep 10% of every host free)');
    const savings = this.checks.nonNegative('minSavingsPerHour', props.minSavingsPerHour ?? 0.01);
    this.checks.throwIfAny();
    this.headroom = headroom;
    this.minSavingsPerHourUsd = savings!;
  }

  toPlanPolicy(applicationIds: string[]): Policy {
    return { kind: 'cost-aware-placement', id: this.policyId, applications: applicationIds, headroom: this.headroom, minSavingsPerHourUsd: this.minSavingsPerHourUsd };
  }
}
