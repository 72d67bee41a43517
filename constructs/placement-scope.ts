/**
 * Where affinity and anti-affinity rules draw their boundaries: one host, one pool, or all
 * hosts sharing a label value (e.g. an availability zone). A value class so `PlacementScope.label('zone')`
 * reads like the rule it is; the plain strings `'host'`, `'pool'`, `'label:zone'` are accepted too.
 */
import { ShardformError, showValue } from '../src/errors';

const LABEL_KEY = /^[a-zA-Z0-9._/-]{1,63}$/;

export type PlacementScopeName = 'host' | 'pool' | `label:${string}`;

export class PlacementScope {
  static host(): PlacementScope {
    return new PlacementScope('host');
  }

  static pool(): PlacementScope {
    return new PlacementScope('pool');
  }

  /** Hosts with the same value of label `key` (host labels override pool labels) form one domain. */
  static label(key: string): PlacementScope {
    if (typeof key !== 'string' || !LABEL_KEY.test(key))
      throw new ShardformError('INVALID_PROPS', 'scope', key, `scope: ${showValue(key)} is not a label key; use 1-63 characters of A-Z, a-z, 0-9 and . _ / -`);
    return new PlacementScope(`label:${key}`);
  }

  /** Accepts a PlacementScope or its string form; throws with the field and value otherwise. */
  static of(value: PlacementScope | PlacementScopeName): PlacementScope {
    if (value instanceof PlacementScope) return value;
    if (value === 'host') return PlacementScope.host();
    if (value === 'pool') return PlacementScope.pool();
    if (typeof value === 'string' && value.startsWith('label:')) return PlacementScope.label(value.slice('label:'.length));
    throw new ShardformError('INVALID_PROPS', 'scope', value, `scope: ${showValue(value)} is not a placement scope; use 'host', 'pool' or 'label:<key>'`);
  }

  private constructor(readonly name: PlacementScopeName) {}

  toString(): string {
    return this.name;
  }
}
