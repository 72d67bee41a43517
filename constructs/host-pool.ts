/**
 * What every host pool has in common: an id (the construct id), a cost per host-hour, labels,
 * and a way to render itself into the plan. Static and AWS pools differ only in where their
 * hosts come from.
 */
import { Construct } from 'constructs';
import type { Pool } from '../src/contracts/plan-schema';
import { fleetOf, type FleetScope } from './fleet-context';
import { PropChecker } from './prop-checks';

export interface HostPoolProps {
  /**
   * What one host of this pool costs per hour, in USD. Cost-aware placement packs onto
   * the cheapest pools first.
   * @default 0 (for AwsHostPool: the on-demand price of its instance type)
   */
  readonly costPerHour?: number;
  /**
   * Labels of every host in the pool, used by `label:<key>` placement scopes.
   * @default {}
   */
  readonly labels?: Readonly<Record<string, string>>;
}

export abstract class HostPool extends Construct {
  /** The pool's id in the plan (the construct id). */
  readonly poolId: string;
  /** The fleet this pool belongs to. */
  readonly fleet: FleetScope;
  protected readonly costPerHourUsd: number;
  protected readonly labels: Record<string, string>;

  /**
   * Failures of the props common to all pools; subclasses add their own and call
   * `checks.throwIfAny()` once, so a user sees every failure of a constructor at once.
   */
  protected readonly checks: PropChecker;

  /**
   * @param terraformOnly props that only reach Terraform resources (a VPC id, an AMI), where a
   *   token is fine; every other prop ends up in the plan and must be a literal.
   */
  protected constructor(scope: Construct, id: string, props: HostPoolProps, defaultCostPerHour = 0, terraformOnly: readonly string[] = []) {
    super(scope, id);
    this.fleet = fleetOf(this);
    this.poolId = id;
    this.checks = PropChecker.for(this);
    this.checks.id('id', id);
    if (!this.checks.literals(props, '', terraformOnly)) this.checks.throwIfAny();
    this.costPerHourUsd = this.checks.nonNegative('costPerHour', props.costPerHour ?? defaultCostPerHour) ?? 0;
    this.labels = this.checks.labels('labels', props.labels ?? {});
  }

  /** The pool as the plan states it. */
  abstract toPlanPool(): Pool;
}
