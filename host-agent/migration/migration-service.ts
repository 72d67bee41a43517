/**
 * Everything an agent needs to take part in migrations, built from its parts in one call:
 * the destination routes and the source's trigger route (to register in the authenticated
 * API scope: AgentOptions.apiPlugins), the driver, and `recover()` to run once at start-up
 * (finish or undo what the journal says was in flight when the agent stopped).
 */
import type { FastifyPluginAsync } from 'fastify';
import { peerUrls } from '../peer-urls';
import type { Plan } from '../../src/contracts/plan-schema';
import type { TxnOp } from '../../src/store/store';
import type { CgroupDriver } from '../cgroups/driver';
import type { CriuCheckpointer } from '../checkpoint/criu-checkpointer';
import { migrationControlRoutes } from '../api/migration-control-routes';
import { migrationRoutes } from '../api/migration-routes';
import type { DesiredShard } from '../reconcile/desired-shard';
import type { RestartHandover, ShardHandover } from '../reconcile/shard-handover';
import { RestartMigrationEffects } from './restart-migration-effects';
import { StrategyEffects } from './strategy-effects';
import { chooseStrategy } from './migration-strategy';
import { CheckpointMigrationEffects } from './checkpoint-migration-effects';
import { IncomingMigrations } from './incoming-migrations';
import type { CapacityView } from '../host-capacity';
import { MigrationClient } from './migration-client';
import { MigrationDriver } from './migration-driver';
import { MigrationError } from './migration-error';
import { isFinished, MigrationJournal, type JournalStore, type UnreadableRecord } from './migration-journal';
import type { MigrationRecord } from './migration-record';

export interface MigrationServiceDeps {
  readonly hostId: string;
  readonly plan: () => Plan | undefined;
  /** The store with transactions (the journal writes by compare-and-swap). */
  readonly store: JournalStore;
  readonly driver: CgroupDriver;
  /** ShardKeeper in the agent. */
  readonly handover: ShardHandover;
  /** The restart strategy's stop/start (ShardKeeper); without it restart migrations are refused. */
  readonly restartHandover?: RestartHandover;
  /** Whether a shard holds established TCP connections (then it migrates by restart); default: never detected. */
  holdsEstablishedTcp?(shardId: string): Promise<boolean>;
  readonly checkpointer: Pick<CriuCheckpointer, 'supportsPreCopy' | 'preDump' | 'dump' | 'restore'>;
  /** The definition of a shard this host runs. */
  describe(shardId: string): Promise<DesiredShard>;
  applicationOf(shardId: string): string | undefined;
  readonly capacity: CapacityView;
  readonly token: () => string | undefined;
  /** Images of migrations in flight, both directions. */
  readonly imagesRoot: string;
  /** The keeper's log directory (`<state dir>/logs`): a migrated shard's stdout and stderr move to this host's files of it. */
  readonly logRoot?: string;
  readonly onFinished?: (record: MigrationRecord) => void;
  /** Writes made with the `committed` journal record (the agent: the shard's assignment). */
  readonly commitWrites?: (record: MigrationRecord) => Promise<readonly TxnOp[]>;
  /**
   * Told when a migration this host drove ended with an error. Its journal record may be left
   * unfinished (an abort that could not reach the destination to clean up, or to destroy a
   * restored copy before resuming the source): `recover()` must run again to finish it.
   */
  readonly onRecoveryNeeded?: () => void;
  /**
   * Why this agent must not start or take in a migration now (it does not hold its host's
   * claim), or undefined. New migrations, prepares and restores are refused while it says so;
   * the agent also keeps recovery from running then.
   */
  readonly notActingReason?: () => string | undefined;
}


/** What recovery did: the records it finished (done or aborted), and those it could not finish now (retried at the next start). */
export interface RecoveryReport {
  readonly recovered: MigrationRecord[];
  readonly failed: { readonly id: string; readonly shardId: string; readonly state: MigrationRecord['state']; readonly error: string }[];
  /** Records in the journal that do not read: left alone (not recovered, their shards not touched) for a human. */
  readonly unreadable?: UnreadableRecord[];
}

export function createMigrationService(deps: MigrationServiceDeps): {
  plugins: FastifyPluginAsync[];
  driver: MigrationDriver;
  journal: MigrationJournal;
  recover(): Promise<RecoveryReport>;
  /** Capacity reserved by migrations arriving here beyond their held cgroups (see IncomingMigrations). */
  reserved(): { cpuCores: number; memoryBytes: number };
} {
  const peers = () => {
    const plan = deps.plan();
    return plan ? peerUrls(plan, deps.hostId) : new Map<string, string>();
  };
  const clients = new Map<string, MigrationClient>();
  const client = (hostId: string): MigrationClient => {
    const baseUrl = peers().get(hostId);
    const token = deps.token();
    if (!baseUrl) throw new MigrationError('INVALID_MIGRATION', `host ${hostId} is not in the plan`);
    if (!token) throw new MigrationError('INVALID_MIGRATION', 'no fleet token: cannot talk to other agents');
    const key = `${hostId} ${baseUrl}`;
    if (!clients.has(key)) clients.set(key, new MigrationClient({ baseUrl, token }));
    return clients.get(key)!;
  };
  const journal = new MigrationJournal(deps.store);
  /** Migrations this process drives right now: recovery leaves them alone (it runs again while the agent runs). */
  const inFlight = new Set<string>();
  const stateDirectoryOf = async (record: MigrationRecord): Promise<string | undefined> => {
    const plan = deps.plan();
    if (!plan) throw new MigrationError('INVALID_TRANSITION', `migration ${record.id}: no plan loaded yet to find the state directory of ${record.applicationId}`);
    return plan.applications.find((a) => a.id === record.applicationId)?.stateDirectory;
  };
  const checkpoint = new CheckpointMigrationEffects({
    driver: deps.driver,
    handover: deps.handover,
    checkpointer: deps.checkpointer,
    describe: (shardId) => deps.describe(shardId),
    stateDirectoryOf,
    client,
    imagesRoot: `${deps.imagesRoot}/outgoing`,
    ...(deps.logRoot ? { logRoot: deps.logRoot } : {}),
    onFinished: deps.onFinished,
  });
  const restartHandover = deps.restartHandover;
  const restart = restartHandover
    ? new RestartMigrationEffects({
        driver: deps.driver,
        handover: { release: (id) => deps.handover.release(id), adopt: (id) => deps.handover.adopt(id), discard: (id) => deps.handover.discard(id), stopHeld: (id) => restartHandover.stopHeld(id), startHeld: (id, d) => restartHandover.startHeld(id, d) },
        describe: (shardId) => deps.describe(shardId),
        stateDirectoryOf,
        client,
        imagesRoot: `${deps.imagesRoot}/outgoing`,
        onFinished: deps.onFinished,
      })
    : undefined;
  const effects = new StrategyEffects({ checkpoint, ...(restart ? { restart } : {}) });
  const driver = new MigrationDriver({ journal, effects, ...(deps.commitWrites ? { commitWrites: deps.commitWrites } : {}) });
  const incoming = new IncomingMigrations(`${deps.imagesRoot}/incoming`, deps.capacity);
  const fleet = () => deps.plan()?.fleet ?? '';
  const plugins = [
    migrationRoutes({
      hostId: deps.hostId,
      incoming,
      handover: deps.handover,
      restorer: deps.checkpointer,
      ...(deps.logRoot ? { logRoot: deps.logRoot } : {}),
      ...(restartHandover ? { restarter: { handover: restartHandover } } : {}),
      ...(deps.notActingReason ? { notActingReason: deps.notActingReason } : {}),
      notJournaledReason: (id, source, shardId) => notJournaledReason(journal, fleet(), deps.hostId, { id, source, shardId }),
    }),
    migrationControlRoutes({
      hostId: deps.hostId,
      fleet: fleet(),
      peers: () => [...peers().keys()],
      list: async () => (await journal.list(fleet())).map((e) => e.record),
      applicationOf: (shardId) => deps.applicationOf(shardId),
      migrate: async (input) => {
        const notActing = deps.notActingReason?.();
        if (notActing) throw new MigrationError('REFUSED', notActing);
        // The plan's per-application migration settings, unless the request says otherwise.
        const app = deps.plan()?.applications.find((a) => a.id === input.applicationId);
        const declared = app?.migration.strategy ?? 'checkpoint';
        const holdsEstablishedTcp = declared === 'checkpoint' && (await deps.holdsEstablishedTcp?.(input.shardId)) === true;
        const { strategy, why } = chooseStrategy({ declared, holdsEstablishedTcp });
        if (strategy === 'restart' && !restart) throw new MigrationError('REFUSED', `shard ${input.shardId} needs the restart strategy (${why}), which this host cannot run`);
        inFlight.add(input.id);
        try {
          return await driver.migrate({
            ...input,
            fleet: fleet(),
            strategy,
            preCopy: strategy === 'restart' ? false : (input.preCopy ?? app?.migration.preCopy ?? false),
            timeoutSeconds: input.timeoutSeconds ?? app?.migration.timeoutSeconds,
          });
        } catch (error) {
          // Refused before anything was journaled, or another driver owns the record: nothing to recover here.
          const code = (error as MigrationError).code;
          if (!(error instanceof MigrationError && (code === 'REFUSED' || code === 'JOURNAL_CONFLICT'))) deps.onRecoveryNeeded?.();
          throw error;
        } finally {
          inFlight.delete(input.id);
        }
      },
    }),
  ];
  return {
    plugins,
    driver,
    journal,
    reserved: () => incoming.reservedBeyondAllocated(),
    // Only migrations this host started: the source drives them (the destination follows its requests).
    // One migration that cannot finish now (the other agent unreachable) does not keep the others from finishing.
    recover: async () => {
      const { unfinished, unreadable } = await journal.scan(fleet());
      const mine = unfinished.filter((e) => e.record.source === deps.hostId);
      // Every unreadable record, not only this host's: which host's it is may be what does not read.
      const report: RecoveryReport = { recovered: [], failed: [], unreadable };
      for (const listed of mine) {
        if (inFlight.has(listed.record.id)) continue; // taken up meanwhile (a new migration of it, or another pass)
        inFlight.add(listed.record.id);
        try {
          // Read again right before acting: the list is as old as the recoveries before this one,
          // and a step replayed from a stale record (an abort, a resume) could undo a newer one.
          const entry = await journal.load(listed.record.fleet, listed.record.id);
          if (!entry || isFinished(entry.record)) continue;
          report.recovered.push(await driver.recover(entry));
        } catch (error) {
          report.failed.push({ id: listed.record.id, shardId: listed.record.shardId, state: listed.record.state, error: (error as Error).message });
        } finally {
          inFlight.delete(listed.record.id);
        }
      }
      return report;
    },
  };
}

/**
 * Why a prepare of migration `id` must be refused because this host's store does not hold it as
 * the source journaled it (`prepared`, from `source`, of `shardId`, to `hostId`), or undefined.
 * The two agents must share one store: the journal, and the shard's assignment that the commit
 * moves to this host in the same transaction. With a store of its own here (the default embedded
 * store, a file on each machine) the commit would be invisible to this host's reconcile, which
 * would stop the shard it had just adopted, while the source's no longer runs it: a shard running
 * nowhere. The test hosts share one machine and so one store file, which hid it.
 */
export async function notJournaledReason(
  journal: Pick<MigrationJournal, 'load'>,
  fleet: string,
  hostId: string,
  asked: { readonly id: string; readonly source: string; readonly shardId: string },
): Promise<string | undefined> {
  let entry;
  try {
    entry = await journal.load(fleet, asked.id);
  } catch (error) {
    return `cannot read migration ${asked.id} from this host's store to check it: ${(error as Error).message}`;
  }
  if (!entry) {
    return (
      `migration ${asked.id} of shard ${asked.shardId} from ${asked.source} is not in fleet ${fleet}'s journal in this host's store: ` +
      `hosts ${asked.source} and ${hostId} do not share one store, and ${hostId} would never see the commit move the shard here ` +
      `(an embedded store is a file on one machine; give a fleet of separate machines one etcd store: store.kind etcd)`
    );
  }
  const r = entry.record;
  if (r.state !== 'prepared' || r.source !== asked.source || r.destination !== hostId || r.shardId !== asked.shardId) {
    return `migration ${asked.id} is journaled as ${r.state}, shard ${r.shardId} from ${r.source} to ${r.destination}; this prepare asks for shard ${asked.shardId} from ${asked.source} to ${hostId}`;
  }
  return undefined;
}
