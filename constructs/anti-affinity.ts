/**
 * Anti-affinity: keep the shards of these applications in different domains (replicas on
 * different hosts, or zones). A hard rule is checked at synth: the minimum shards of its
 * applications need that many domains.
 */
import type { Construct } from 'constructs';
import { antiAffinityProblem } from '../src/contracts/plan-checks';
import type { Policy } from '../src/contracts/plan-schema';
import { PlacementRule, type PlacementRuleProps } from './placement-rule';
import { problemAt } from './prop-checks';

export type AntiAffinityProps = PlacementRuleProps;

export class AntiAffinity extends PlacementRule {
  constructor(scope: Construct, id: string, props: AntiAffinityProps = {}) {
    super(scope, id, props);
    this.node.addValidation({ validate: () => this.domainProblems() });
  }

  toPlanPolicy(applicationIds: string[]): Policy {
    return this.rule('anti-affinity', applicationIds);
  }

  /** "hard anti-affinity needing more hosts than exist", with the rule the plan checks use. */
  private domainProblems(): string[] {
    if (this.mode !== 'hard') return [];
    const { plan } = this.fleet.analysis();
    const governed = new Set(this.applications.map((a) => a.applicationId));
    const problem = antiAffinityProblem(plan.applications.filter((a) => governed.size === 0 || governed.has(a.id)), plan.pools, this.scope.name);
    return problem ? [problemAt(this, 'scope', problem)] : [];
  }
}
