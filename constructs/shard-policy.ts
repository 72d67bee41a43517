/**
 * What every policy construct has in common: an id (the construct id), the applications it
 * governs as ShardedApplication objects (so a typo cannot compile and the policy can ask each
 * application for its fleet and pool), and a rendering into the plan.
 */
import { Construct } from 'constructs';
import type { Policy } from '../src/contracts/plan-schema';
import { fleetOf, type FleetScope } from './fleet-context';
import { PropChecker, problemAt } from './prop-checks';
import type { ShardedApplication } from './sharded-application';

export interface ShardPolicyProps {
  /**
   * The applications this policy governs; more can be added with `addApplication()` or
   * `application.addPolicy(policy)`.
   * @default every application of the fleet (the plan's empty list)
   */
  readonly applications?: readonly ShardedApplication[];
}

export abstract class ShardPolicy extends Construct {
  /** The policy's id in the plan (the construct id). */
  readonly policyId: string;
  readonly fleet: FleetScope;
  /** Failures of the common props; subclasses add theirs and call `checks.throwIfAny()`. */
  protected readonly checks: PropChecker;
  private readonly governed: ShardedApplication[] = [];

  protected constructor(scope: Construct, id: string, props: ShardPolicyProps) {
    super(scope, id);
    this.fleet = fleetOf(this);
    this.policyId = id;
    this.checks = PropChecker.for(this);
    this.checks.id('id', id);
    if (!this.checks.literals(props)) this.checks.throwIfAny();
    if (props.applications !== undefined && !Array.isArray(props.applications))
      this.checks.fail('applications', props.applications, 'is not a list; use [web, db] (ShardedApplication objects)');
    else this.governed.push(...(props.applications ?? []));
    this.node.addValidation({ validate: () => this.referenceProblems() });
  }

  /** Governs these applications too (a policy with none governs every application). */
  addApplication(...applications: ShardedApplication[]): this {
    for (const application of applications) if (!this.governed.includes(application)) this.governed.push(application);
    return this;
  }

  /** The governed applications; empty means every application of the fleet. */
  get applications(): readonly ShardedApplication[] {
    return [...this.governed];
  }

  /** The plan's policy, given the governed application ids (sorted by the compiler). */
  abstract toPlanPolicy(applicationIds: string[]): Policy;

  /** "unknown application references": an application of another fleet cannot be governed here. */
  private referenceProblems(): string[] {
    return this.governed.flatMap((application, index) =>
      application.fleet === this.fleet
        ? []
        : [
            problemAt(
              this,
              `applications[${index}]`,
              `application '${application.applicationId}' (${application.node.path}) belongs to fleet '${application.fleet.fleetName}'; ` +
                `a policy can only govern applications of its own fleet '${this.fleet.fleetName}'`,
            ),
          ],
    );
  }
}
