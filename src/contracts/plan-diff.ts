/**
 * What changed between two plans, keyed by ids (not array positions), so reordering is no
 * change and a renamed host shows as removed + added. Used by `shardform plan diff` for people
 * and pipelines (`--json`).
 */
import type { Plan } from './plan-schema';

export interface FieldChange {
  /** Path below the entity, e.g. `shards.max`, `capacity.memoryBytes`. */
  readonly path: string;
  readonly old?: unknown;
  readonly new?: unknown;
}

export interface EntityChange {
  readonly kind: 'pool' | 'host' | 'application' | 'policy' | 'settings';
  readonly id: string;
  readonly change: 'added' | 'removed' | 'changed';
  readonly fields: readonly FieldChange[];
}

export interface PlanDiff {
  readonly fleet: { readonly old: string; readonly new: string };
  readonly generation: { readonly old: number; readonly new: number };
  readonly digest: { readonly old: string; readonly new: string };
  readonly changes: readonly EntityChange[];
}

/** Field-level differences of two JSON values; arrays of scalars compare whole. */
export function diffValues(before: unknown, after: unknown, path = ''): FieldChange[] {
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((key) => diffValues(before[key], after[key], path ? `${path}.${key}` : key));
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  return [{ path: path || '(value)', old: before, new: after }];
}

function diffById<T extends { id: string }>(kind: EntityChange['kind'], before: readonly T[], after: readonly T[], omit: readonly string[] = []): EntityChange[] {
  const strip = (item: T) => Object.fromEntries(Object.entries(item).filter(([k]) => !omit.includes(k)));
  const oldById = new Map(before.map((item) => [item.id, item]));
  const newById = new Map(after.map((item) => [item.id, item]));
  const ids = [...new Set([...oldById.keys(), ...newById.keys()])].sort();
  const changes: EntityChange[] = [];
  for (const id of ids) {
    const o = oldById.get(id);
    const n = newById.get(id);
    if (!o) changes.push({ kind, id, change: 'added', fields: diffValues(undefined, strip(n!)) });
    else if (!n) changes.push({ kind, id, change: 'removed', fields: [] });
    else {
      const fields = diffValues(strip(o), strip(n));
      if (fields.length > 0) changes.push({ kind, id, change: 'changed', fields });
    }
  }
  return changes;
}

export function diffPlans(before: Plan, after: Plan): PlanDiff {
  const hosts = (plan: Plan) => plan.pools.flatMap((pool) => pool.hosts.map((host) => ({ ...host, pool: pool.id })));
  const settings = (plan: Plan) => [
    { id: 'predictor', value: plan.predictor },
    { id: 'store', value: plan.store },
    { id: 'security', value: plan.security },
    { id: 'agent', value: plan.agent },
  ];
  return {
    fleet: { old: before.fleet, new: after.fleet },
    generation: { old: before.generation, new: after.generation },
    digest: { old: before.digest, new: after.digest },
    changes: [
      ...diffById('pool', before.pools, after.pools, ['hosts']),
      ...diffById('host', hosts(before), hosts(after)),
      ...diffById('application', before.applications, after.applications),
      ...diffById('policy', before.policies, after.policies),
      ...diffById('settings', settings(before), settings(after)).map((c) => ({
        ...c,
        fields: c.fields.map((f) => ({ ...f, path: f.path.replace(/^value\.?/, '') || '(value)' })),
      })),
    ],
  };
}
