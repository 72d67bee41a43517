/**
 * Affinity: keep the shards of these applications in the same domain (e.g. a cache next to its
 * app). A hard rule is checked at synth: with scope host or pool its applications must share a
 * pool, and with scope host their initial shards must fit one host.
 */
import type { Construct } from 'constructs';
import { affinityProblem } from '../src/contracts/plan-checks';
import type { Policy } from '../src/contracts/plan-schema';
import { PlacementRule, type PlacementRuleProps } from './placement-rule';
import { problemAt } from './prop-checks';

export type AffinityProps = PlacementRuleProps;

export class Affinity extends PlacementRule {
  constructor(scope: Construct, id: string, props: AffinityProps = {}) {
    super(scope, id, props);
    this.node.addValidation({ validate: () => this.domainProblems() });
  }

  toPlanPolicy(applicationIds: string[]): Policy {
    return this.rule('affinity', applicationIds);
  }

  /** "hard affinity that cannot hold", with the rule the plan checks use. */
  private domainProblems(): string[] {
    if (this.mode !== 'hard') return [];
    const { plan } = this.fleet.analysis();
    const governed = new Set(this.applications.map((a) => a.applicationId));
    const problem = affinityProblem(plan.applications.filter((a) => governed.size === 0 || governed.has(a.id)), plan.pools, this.scope.name);
    return problem ? [problemAt(this, 'scope', problem)] : [];
  }
}
