import type { Command } from 'commander';
import { checkPlan } from '../../contracts/plan';
import { diffPlans, type PlanDiff } from '../../contracts/plan-diff';
import { shardLimits } from '../../contracts/plan-checks';
import type { Capacity, Plan, Policy } from '../../contracts/plan-schema';
import { poolAllocations } from '../../contracts/plan-summary';
import { formatBytes, formatDuration } from '../../contracts/quantities';
import { formatFieldError, showValue } from '../../errors';
import { EXIT_FAILURE, EXIT_USAGE } from '../exit-codes';
import { ExitWith } from '../main';
import { table, type Io } from '../output';
import { readJsonFile } from '../read-json';
import { placeShards } from '../../../policies/initial-placement';

/** Reads a plan for a command; an invalid one prints every error and exits 1. */
function readPlan(file: string, io: Io): Plan {
  const result = checkPlan(readJsonFile(file, io));
  if (result.ok) return result.plan;
  for (const error of result.errors) io.err(`${file}: ${formatFieldError(error)}`);
  io.err(`${file}: invalid (${result.errors.length} error${result.errors.length === 1 ? '' : 's'})`);
  throw new ExitWith(EXIT_FAILURE);
}

const cores = (n: number) => `${Math.round(n * 1000) / 1000}`;
const iops = (n: number) => (n === 0 ? '-' : String(n));
const capacityCells = (c: Capacity) => [cores(c.cpuCores), formatBytes(c.memoryBytes), `${iops(c.readIops)}/${iops(c.writeIops)}`];

function describePolicy(policy: Policy): string {
  switch (policy.kind) {
    case 'proactive-migration':
      return `migrate when predicted p${Math.round(policy.quantile * 100)} over ${formatDuration(policy.horizonSeconds)} > ${Math.round(policy.threshold * 100)}% of host; cooldown ${formatDuration(policy.cooldownSeconds)}`;
    case 'cost-aware-placement':
      return `pack onto cheapest hosts keeping ${Math.round(policy.headroom * 100)}% headroom; move only to save >= $${policy.minSavingsPerHourUsd}/h`;
    case 'affinity':
    case 'anti-affinity':
      return `${policy.mode} ${policy.kind === 'affinity' ? 'together' : 'apart'} per ${policy.scope}${policy.mode === 'soft' ? ` (weight ${policy.weight})` : ''}`;
  }
}

export function renderPlan(plan: Plan): string {
  const allocations = poolAllocations(plan);
  const sections = [
    `fleet ${plan.fleet}  generation ${plan.generation}  ${plan.digest}`,
    '',
    'POOLS (capacity = sum of hosts; allocated = initial shards x shard size)',
    table(
      ['POOL', 'KIND', 'HOSTS', '$/HOST/H', 'CPU', 'MEMORY', 'IOPS R/W', 'ALLOC CPU', 'ALLOC MEM', 'FREE CPU', 'FREE MEM'],
      allocations.map((a) => [
        a.pool.id,
        a.pool.kind,
        String(a.hosts),
        a.pool.costPerHourUsd.toFixed(3),
        ...capacityCells(a.capacity),
        cores(a.allocated.cpuCores),
        formatBytes(a.allocated.memoryBytes),
        cores(a.unallocated.cpuCores),
        formatBytes(a.unallocated.memoryBytes),
      ]),
    ),
    '',
    'HOSTS',
    table(
      ['HOST', 'POOL', 'ADDRESS', 'CPU', 'MEMORY', 'IOPS R/W'],
      plan.pools.flatMap((pool) =>
        pool.hosts.length > 0
          ? pool.hosts.map((h) => [h.id, pool.id, h.address, ...capacityCells(h.capacity)])
          : pool.discovery && pool.hostCapacity
            ? [[`(${pool.discovery.minHosts}-${pool.discovery.maxHosts} x ${pool.discovery.instanceType})`, pool.id, `tag ${pool.discovery.tagKey}=${pool.discovery.tagValue}`, ...capacityCells(pool.hostCapacity)]]
            : [],
      ),
    ),
    '',
    'APPLICATIONS (shard = granularity x units)',
    table(
      ['APPLICATION', 'POOL', 'GRANULARITY', 'SHARD', 'SHARDS MIN/INIT/MAX', 'MIGRATION', 'COMMAND'],
      plan.applications.map((app) => {
        const shard = shardLimits(app);
        return [
          app.id,
          app.pool,
          `${cores(app.granularity.cpuCores)} cpu + ${formatBytes(app.granularity.memoryBytes)}`,
          `${cores(shard.cpuCores)} cpu + ${formatBytes(shard.memoryBytes)}`,
          `${app.shards.min}/${app.shards.initial}/${app.shards.max}`,
          `${app.migration.strategy}${app.migration.preCopy ? '+pre-copy' : ''}`,
          app.command.map((arg) => (/\s/.test(arg) ? JSON.stringify(arg) : arg)).join(' ').slice(0, 60),
        ];
      }),
    ),
    ...unplacedSection(plan),
    '',
    'POLICIES',
    plan.policies.length === 0
      ? '(none)'
      : table(
          ['POLICY', 'KIND', 'APPLICATIONS', 'RULE'],
          plan.policies.map((p) => [p.id, p.kind, p.applications.length === 0 ? '(all)' : p.applications.join(','), describePolicy(p)]),
        ),
    '',
    `predictor ${plan.predictor.model}: p${Math.round(plan.predictor.quantile * 100)} peak over ${formatDuration(plan.predictor.horizonSeconds)}, ` +
      `${formatDuration(plan.predictor.intervalSeconds)} grid, cold start below ${formatDuration(plan.predictor.minHistorySeconds)} of history`,
    `store ${plan.store.kind === 'embedded' ? `embedded ${plan.store.path}` : `etcd ${plan.store.endpoints.join(',')} ${plan.store.prefix}`}` +
      `   agents :${plan.agent.port}, sample every ${formatDuration(plan.agent.sampleIntervalSeconds)}, auth ${plan.security.auth}`,
  ];
  return sections.join('\n');
}

/**
 * The initial shards that the agents' placement (the same answer on every agent) gives to no
 * host, so no agent runs them: a plan of an AWS pool has all of its shards here today. Nothing
 * when every shard is placed.
 */
function unplacedSection(plan: Plan): string[] {
  const { unplaced } = placeShards(plan);
  if (unplaced.length === 0) return [];
  const poolOf = new Map(plan.applications.map((app) => [app.id, app.pool]));
  return [
    '',
    'UNPLACED (initial shards no host of the plan receives: no agent runs them)',
    table(
      ['SHARD', 'APPLICATION', 'POOL', 'REASON'],
      unplaced.map((u) => [u.shardId, u.applicationId, poolOf.get(u.applicationId) ?? '', u.reason]),
    ),
  ];
}

export function renderDiff(diff: PlanDiff): string {
  const lines = [
    `fleet ${diff.fleet.old === diff.fleet.new ? diff.fleet.new : `${diff.fleet.old} -> ${diff.fleet.new}`}  generation ${diff.generation.old} -> ${diff.generation.new}` +
      (diff.generation.new <= diff.generation.old && diff.digest.old !== diff.digest.new ? '  (warning: content changed but generation did not increase; agents will refuse it)' : ''),
  ];
  if (diff.changes.length === 0) lines.push(diff.digest.old === diff.digest.new ? 'no changes' : 'no changes besides the fleet and generation above');
  for (const change of diff.changes) {
    const sign = change.change === 'added' ? '+' : change.change === 'removed' ? '-' : '~';
    lines.push(`${sign} ${change.kind} ${change.id}`);
    if (change.change === 'changed') for (const f of change.fields) lines.push(`    ${f.path}: ${showValue(f.old)} -> ${showValue(f.new)}`);
  }
  return lines.join('\n');
}

export function registerPlanCommands(program: Command, io: Io): void {
  const plan = program.command('plan').description('inspect and check shard plans (shard-plan.json)');
  plan
    .command('validate')
    .argument('<file>', 'shard-plan.json')
    .description('check a plan: schema, references, capacity, digest; exit 0 valid, 1 invalid (every error listed), 2 unreadable')
    .action((file: string) => {
      const valid = readPlan(file, io);
      io.out(`${file}: valid plan for fleet ${valid.fleet}, generation ${valid.generation}, ${valid.digest}`);
    });
  plan
    .command('show')
    .argument('<file>', 'shard-plan.json')
    .option('--json', 'print the validated plan as JSON')
    .description('print pools, hosts, capacity, applications, shards, policies and what is unallocated')
    .action((file: string, options: { json?: boolean }) => {
      const valid = readPlan(file, io);
      io.out(options.json ? JSON.stringify(valid, null, 2) : renderPlan(valid));
    });
  plan
    .command('diff')
    .argument('<old>', 'the plan currently applied')
    .argument('<new>', 'the proposed plan')
    .option('--json', 'print the changes as one JSON object')
    .option('--exit-code', 'exit 1 when the plans differ (like git diff --exit-code); an unreadable or invalid plan is 2')
    .description('what changed between two plans, by pool, host, application, policy and settings')
    .action((oldFile: string, newFile: string, options: { json?: boolean; exitCode?: boolean }) => {
      // Exit 1 means "the plans differ" (--exit-code): a plan that cannot be compared is 2, as
      // documented, so `plan diff --exit-code old new || apply` never mistakes a broken plan for a change.
      const read = (file: string) => {
        try {
          return readPlan(file, io);
        } catch (error) {
          if (error instanceof ExitWith && error.code === EXIT_FAILURE) throw new ExitWith(EXIT_USAGE);
          throw error;
        }
      };
      const diff = diffPlans(read(oldFile), read(newFile));
      io.out(options.json ? JSON.stringify(diff) : renderDiff(diff));
      // Different bytes are a different plan for the agents (a renamed fleet, a bumped generation),
      // even when no pool, host, application, policy or setting changed.
      if (options.exitCode && diff.digest.old !== diff.digest.new) throw new ExitWith(EXIT_FAILURE);
    });
}
