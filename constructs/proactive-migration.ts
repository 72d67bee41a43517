/**
 * Proactive migration: move a shard off a host when the predicted demand of the host's shards
 * at `horizon` (the `quantile` of the prediction) exceeds `threshold` of its capacity, before
 * contention happens rather than after.
 */
import type { Construct } from 'constructs';
import type { Policy } from '../src/contracts/plan-schema';
import { formatDuration, type Quantity } from '../src/contracts/quantities';
import { horizonProblem } from '../src/contracts/prediction-grid';
import { showValue } from '../src/errors';
import { problemAt } from './prop-checks';
import { ShardPolicy, type ShardPolicyProps } from './shard-policy';

export interface ProactiveMigrationProps extends ShardPolicyProps {
  /**
   * Fraction of a host's capacity the predicted demand may reach; above it, shards move.
   * In (0, 1].
   * @default 0.8
   */
  readonly threshold?: number;
  /**
   * How far ahead the prediction looks; long enough to finish a migration before the peak.
   * Predicted on the fleet's predictor grid, so a whole multiple of the fleet's
   * `predictor.interval`, at most 10,000 of it (checked at synth).
   * @default '15m'
   */
  readonly horizon?: Quantity;
  /**
   * Which quantile of the predicted demand counts (0.95 = plan for all but the worst 5%).
   * In (0, 1).
   * @default 0.95
   */
  readonly quantile?: number;
  /**
   * Minimum time between two migrations of the same shard, so shards do not flap.
   * @default '10m'
   */
  readonly cooldown?: Quantity;
}

export class ProactiveMigration extends ShardPolicy {
  private readonly settings: { threshold: number; horizonSeconds: number; quantile: number; cooldownSeconds: number };

  constructor(scope: Construct, id: string, props: ProactiveMigrationProps = {}) {
    super(scope, id, props);
    const threshold = this.checks.number('threshold', props.threshold ?? 0.8, 0, 1, true);
    const horizonSeconds = this.checks.duration('horizon', props.horizon ?? '15m', 1);
    const quantile = props.quantile ?? 0.95;
    this.checks.require(typeof quantile === 'number' && quantile > 0 && quantile < 1, 'quantile', quantile, 'is outside (0, 1); use e.g. 0.95');
    const cooldownSeconds = this.checks.duration('cooldown', props.cooldown ?? '10m');
    this.checks.throwIfAny();
    this.settings = { threshold: threshold!, horizonSeconds: horizonSeconds!, quantile, cooldownSeconds: cooldownSeconds! };
    // The fleet's grid is known only once the tree is whole (and the fleet is the plan's source of it).
    const horizon = props.horizon ?? '15m';
    this.node.addValidation({
      validate: () => {
        const intervalSeconds = this.fleet.analysis().plan.predictor.intervalSeconds;
        const problem = horizonProblem(this.settings.horizonSeconds, intervalSeconds, `the fleet's predictor.interval (${formatDuration(intervalSeconds)})`);
        return problem ? [problemAt(this, 'horizon', `${showValue(horizon)} is not ${problem}`)] : [];
      },
    });
  }

  toPlanPolicy(applicationIds: string[]): Policy {
    return { kind: 'proactive-migration', id: this.policyId, applications: applicationIds, ...this.settings };
  }
}
