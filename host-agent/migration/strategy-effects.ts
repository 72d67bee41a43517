/**
 * One MigrationEffects for the driver that hands each step to the effects of the record's
 * strategy (`checkpoint` or `restart`): the driver, journal and recovery stay strategy-blind.
 */
import type { MigrationEffects } from './migration-effects';
import { MigrationError } from './migration-error';
import type { MigrationRecord } from './migration-record';

export class StrategyEffects implements MigrationEffects {
  /** `restart` is absent on a host that cannot stop and start held shards (no ShardKeeper). */
  constructor(private readonly byStrategy: { readonly checkpoint: MigrationEffects; readonly restart?: MigrationEffects }) {}

  private of(record: MigrationRecord): MigrationEffects {
    const effects = this.byStrategy[record.strategy];
    if (!effects) throw new MigrationError('REFUSED', `migration ${record.id}: this host cannot run the ${record.strategy} strategy`);
    return effects;
  }

  prepare(r: MigrationRecord) {
    return this.of(r).prepare(r);
  }
  preCopySupport(r: MigrationRecord) {
    return this.of(r).preCopySupport(r);
  }
  preCopyRound(r: MigrationRecord, round: number) {
    return this.of(r).preCopyRound(r, round);
  }
  freeze(r: MigrationRecord) {
    return this.of(r).freeze(r);
  }
  dump(r: MigrationRecord) {
    return this.of(r).dump(r);
  }
  transfer(r: MigrationRecord) {
    return this.of(r).transfer(r);
  }
  restore(r: MigrationRecord) {
    return this.of(r).restore(r);
  }
  releaseSource(r: MigrationRecord) {
    return this.of(r).releaseSource(r);
  }
  destroyDestination(r: MigrationRecord) {
    return this.of(r).destroyDestination(r);
  }
  resumeSource(r: MigrationRecord) {
    return this.of(r).resumeSource(r);
  }
  finished(r: MigrationRecord): void {
    (this.byStrategy[r.strategy] ?? this.byStrategy.checkpoint).finished(r);
  }
}
