/**
 * Anti-affinity: keep the shards of these applications in different domains (replicas on
 * different hosts, or zones). A hard rule is checked at synth: the minimum shards of its
 * applications need that many domains.
 */
import type { Construct } from 'constructs';
import { antiAffinityProblem } from '../src/contracts/plan-checks';
import type { Policy } from '../src/contracts/plan-schema';
import { PlacementRule, type PlacementRuleProps } from './placement-rule';

export type AntiAffinityProps = PlacementRuleProps;

export class AntiAffinity extends PlacementRule {
  constructor(scope: Construct, id: string, props: AntiAffinityProps = {}) {
    super(scope, id, props);
    this.validateHardRule(antiAffinityProblem);
  }

  toPlanPolicy(applicationIds: string[]): Policy {
    return this.rule('anti-affinity', applicationIds);
  }
}
