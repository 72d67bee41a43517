/**
 * How a construct finds the fleet it belongs to without importing ShardFleet (which imports
 * the plan compiler, which imports every construct): the fleet marks itself with a symbol and
 * members walk up their scopes. Keeps the module graph free of cycles.
 */
import type { IConstruct } from 'constructs';
import { ShardformError } from '../src/errors';
import type { FleetAnalysis } from './plan-compiler';

const FLEET_MARK = Symbol.for('shardform.ShardFleet');

/** What members need from their fleet. */
export interface FleetScope extends IConstruct {
  /** The plan's `fleet` name. */
  readonly fleetName: string;
  /** The agent port every host listens on (security groups open it). */
  readonly agentPort: number;
  /** Where agents the fleet launches keep their state (`agent.stateDirectory`): `<it>/<host id>`. */
  readonly agentStateDirectory: string;
  /** The compiled plan plus the whole-tree facts validations ask about (cached during one validation pass). */
  analysis(): FleetAnalysis;
  /** The serialized plan (cached during one synthesis). */
  planJson(): string;
  /** The plan's digest (cached during one synthesis). */
  planDigest(): string;
  readonly generation: number;
}

export function markFleet(fleet: FleetScope): void {
  Object.defineProperty(fleet, FLEET_MARK, { value: true, enumerable: false });
}

export function isFleet(construct: IConstruct): construct is FleetScope {
  return (construct as unknown as Record<symbol, unknown>)[FLEET_MARK] === true;
}

/** The nearest enclosing fleet; members must be created inside one. */
export function fleetOf(construct: IConstruct): FleetScope {
  for (let scope: IConstruct | undefined = construct; scope; scope = scope.node.scope) {
    if (isFleet(scope)) return scope;
  }
  // Thrown from the member's constructor after it joined its scope: leave nothing half-built there.
  construct.node.scope?.node.tryRemoveChild(construct.node.id);
  throw new ShardformError(
    'INVALID_PROPS',
    construct.node.path,
    construct.node.id,
    `${construct.node.path}: must be created inside a ShardFleet (new ShardFleet(app, 'my-fleet')), not directly in ${construct.node.scope?.node.path || 'the app'}`,
  );
}
