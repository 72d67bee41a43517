/**
 * What affinity and anti-affinity share: a scope (host, pool or label domain), hard or soft,
 * and a weight for soft rules. Kept apart from the two constructs so each stays one concept.
 */
import type { Construct } from 'constructs';
import type { AffinityPolicy, AntiAffinityPolicy, Application, Pool } from '../src/contracts/plan-schema';
import { PlacementScope, type PlacementScopeName } from './placement-scope';
import { problemAt } from './prop-checks';
import { ShardPolicy, type ShardPolicyProps } from './shard-policy';

export interface PlacementRuleProps extends ShardPolicyProps {
  /**
   * The domain the rule is about: one host, one pool, or hosts sharing a label value.
   * @default 'host'
   */
  readonly scope?: PlacementScope | PlacementScopeName;
  /**
   * `hard`: placement fails rather than break the rule. `soft`: breaking it costs `weight`.
   * @default 'soft'
   */
  readonly mode?: 'hard' | 'soft';
  /**
   * How strongly a soft rule counts against a placement, 1-100 (ignored by hard rules).
   * @default 50
   */
  readonly weight?: number;
}

export abstract class PlacementRule extends ShardPolicy {
  readonly scope: PlacementScope;
  readonly mode: 'hard' | 'soft';
  readonly weight: number;

  protected constructor(scope: Construct, id: string, props: PlacementRuleProps) {
    super(scope, id, props);
    const placementScope = this.checks.parse('scope', props.scope, () => PlacementScope.of(props.scope ?? 'host'));
    const mode = props.mode ?? 'soft';
    this.checks.require(mode === 'hard' || mode === 'soft', 'mode', mode, "is not a mode; use 'hard' or 'soft'");
    const weight = this.checks.integer('weight', props.weight ?? 50, 1, 100);
    this.checks.throwIfAny();
    this.scope = placementScope!;
    this.mode = mode;
    this.weight = weight!;
  }

  protected rule<K extends 'affinity' | 'anti-affinity'>(kind: K, applicationIds: string[]): (K extends 'affinity' ? AffinityPolicy : AntiAffinityPolicy) {
    return { kind, id: this.policyId, applications: applicationIds, scope: this.scope.name, mode: this.mode, weight: this.weight } as K extends 'affinity' ? AffinityPolicy : AntiAffinityPolicy;
  }

  /**
   * Validates at synth that a hard rule can hold, with the rule the plan checks use (`problem`
   * gets the applications it governs, the pools and the scope).
   */
  protected validateHardRule(problem: (governed: readonly Application[], pools: readonly Pool[], scope: string) => string | undefined): void {
    this.node.addValidation({
      validate: () => {
        if (this.mode !== 'hard') return [];
        const { plan } = this.fleet.analysis();
        const governed = new Set(this.applications.map((a) => a.applicationId));
        const found = problem(plan.applications.filter((a) => governed.size === 0 || governed.has(a.id)), plan.pools, this.scope.name);
        return found ? [problemAt(this, 'scope', found)] : [];
      },
    });
  }
}
