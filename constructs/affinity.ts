/**
 * Affinity: keep the shards of these applications in the same domain (e.g. a cache next to its
 * app). A hard rule is checked at synth: with scope host or pool its applications must share a
 * pool, and with scope host their initial shards must fit one host.
 */
import type { Construct } from 'constructs';
import { affinityProblem } from '../src/contracts/plan-checks';
import type { Policy } from '../src/contracts/plan-schema';
import { PlacementRule, type PlacementRuleProps } from './placement-rule';

export type AffinityProps = PlacementRuleProps;

export class Affinity extends PlacementRule {
  constructor(scope: Construct, id: string, props: AffinityProps = {}) {
    super(scope, id, props);
    this.validateHardRule(affinityProblem);
  }

  toPlanPolicy(applicationIds: string[]): Policy {
    return this.rule('affinity', applicationIds);
  }
}
