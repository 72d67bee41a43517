/** Affinity: keep the shards of these applications in the same domain (e.g. a cache next to its app). */
import type { Construct } from 'constructs';
import type { Policy } from '../src/contracts/plan-schema';
import { PlacementRule, type PlacementRuleProps } from './placement-rule';

export type AffinityProps = PlacementRuleProps;

export class Affinity extends PlacementRule {
  constructor(scope: Construct, id: string, props: AffinityProps = {}) {
    super(scope, id, props);
  }

  toPlanPolicy(applicationIds: string[]): Policy {
    return this.rule('affinity', applicationIds);
  }
}
