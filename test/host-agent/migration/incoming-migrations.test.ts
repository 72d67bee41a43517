import { IncomingMigrations, KEPT_OUTCOMES } from '../../../host-agent/migration/incoming-migrations';
import type { DesiredShard } from '../../../host-agent/reconcile/desired-shard';

const GiB = 2 ** 30;

const shard = (shardId: string, cpuCores = 1, memoryBytes = GiB): DesiredShard => ({
  shardId,
  applicationId: 'web',
  limits: { cpuCores, memoryBytes },
  command: ['/bin/sleep', 'infinity'],
  env: {},
  stateDirectory: '/var/lib/web',
});

describe('IncomingMigrations', () => {
  describe('capacity', () => {
    it('counts a reservation once, by the larger of the entry and what the view already counts for its shard', () => {
      const held = new Map<string, { cpuCores: number; memoryBytes: number }>();
      const incoming = new IncomingMigrations('/images', {
        capacity: () => ({ cpuCores: 4, memoryBytes: 8 * GiB }),
        allocated: () => [...held.values()].reduce((a, h) => ({ cpuCores: a.cpuCores + h.cpuCores, memoryBytes: a.memoryBytes + h.memoryBytes }), { cpuCores: 0, memoryBytes: 0 }),
        allocatedTo: (shardId) => held.get(shardId),
      });
      incoming.prepare('mig-1', 'host-1', shard('web-1', 2, 2 * GiB));
      expect(incoming.refusal(shard('web-9', 2.5, GiB))).toBe('out of capacity: 2 cpu cores free, shard web-9 needs 2.5');
      held.set('web-1', { cpuCores: 2, memoryBytes: 2 * GiB }); // its held cgroup, as the entry
      expect(incoming.refusal(shard('web-9', 2.5, GiB))).toBe('out of capacity: 2 cpu cores free, shard web-9 needs 2.5');
      expect(incoming.refusal(shard('web-9', 2, GiB))).toBeUndefined();
      held.set('web-1', { cpuCores: 0.5, memoryBytes: 6 * GiB }); // a held cgroup with other limits (an older hold the keeper reuses)
      expect(incoming.refusal(shard('web-9', 2, GiB))).toBeUndefined();
      expect(incoming.refusal(shard('web-9', 2, 3 * GiB))).toBe(`out of capacity: ${2 * GiB} memory bytes free, shard web-9 needs ${3 * GiB}`);
      expect(incoming.refusal(shard('web-9', 2.5, GiB))).toBe('out of capacity: 2 cpu cores free, shard web-9 needs 2.5');
    });

    it('counts every reservation on the standalone server, whose view knows no held cgroups, and what was committed there', () => {
      const incoming = IncomingMigrations.withFixedCapacity('/images', { cpuCores: 2, memoryBytes: 4 * GiB });
      incoming.prepare('mig-1', 'host-1', shard('web-1', 1, GiB));
      incoming.prepare('mig-2', 'host-1', shard('web-2', 0.5, GiB));
      expect(incoming.refusal(shard('web-9', 0.75, GiB))).toBe('out of capacity: 0.5 cpu cores free, shard web-9 needs 0.75');
      const first = incoming.get('mig-1')!;
      first.state = 'committed';
      incoming.finish(first);
      expect(incoming.refusal(shard('web-9', 0.75, GiB))).toBe('out of capacity: 0.5 cpu cores free, shard web-9 needs 0.75');
      expect(incoming.refusal(shard('web-9', 0.5, GiB))).toBeUndefined();
    });
  });

  describe('finished migrations', () => {
    /** Prepares, commits (or aborts) and finishes migration `id`, as the routes do. */
    const finishOne = (incoming: IncomingMigrations, id: string, state: 'committed' | 'aborted', desired = shard(`s-${id}`, 0.001, 1)) => {
      const m = incoming.prepare(id, 'host-1', desired);
      m.state = state;
      if (state === 'committed') m.pid = 4242;
      incoming.finish(m);
    };

    it('drops the entry and keeps the outcome, the oldest outcomes going first past the bound', () => {
      const incoming = new IncomingMigrations('/images', { capacity: () => ({ cpuCores: 64, memoryBytes: 64 * GiB }), allocated: () => ({ cpuCores: 0, memoryBytes: 0 }) });
      finishOne(incoming, 'mig-0', 'committed');
      finishOne(incoming, 'mig-1', 'aborted');
      expect(incoming.get('mig-0')).toBeUndefined();
      expect(incoming.status('mig-0')).toEqual({ shardId: 's-mig-0', state: 'committed', pid: 4242 });
      expect(incoming.status('mig-1')).toEqual({ shardId: 's-mig-1', state: 'aborted' });
      for (let i = 2; i <= KEPT_OUTCOMES; i += 1) finishOne(incoming, `mig-${i}`, 'aborted');
      expect(incoming.status('mig-0')).toBeUndefined();
      expect(incoming.status('mig-1')).toBeDefined();
      expect(incoming.status(`mig-${KEPT_OUTCOMES}`)).toBeDefined();
    });

    it('keeps counting what committed migrations hold once their entries are dropped (the standalone server\'s capacity)', () => {
      const incoming = IncomingMigrations.withFixedCapacity('/images', { cpuCores: 2, memoryBytes: 4 * GiB });
      finishOne(incoming, 'mig-1', 'committed', shard('web-0', 1, GiB));
      finishOne(incoming, 'mig-2', 'aborted', shard('web-1', 0.5, GiB));
      incoming.prepare('mig-3', 'host-1', shard('web-2', 0.25, GiB)).state = 'committed'; // cleanup not done yet
      expect(incoming.committedAllocation()).toEqual({ cpuCores: 1.25, memoryBytes: 2 * GiB });
      for (let i = 4; i <= KEPT_OUTCOMES + 4; i += 1) finishOne(incoming, `mig-${i}`, 'aborted');
      expect(incoming.status('mig-1')).toBeUndefined();
      expect(incoming.committedAllocation()).toEqual({ cpuCores: 1.25, memoryBytes: 2 * GiB });
      expect(() => incoming.prepare('mig-new', 'host-1', shard('web-9', 1, GiB))).toThrow('out of capacity: 0.75 cpu cores free, shard web-9 needs 1');
    });

    it('refuses to prepare again a migration that ended here, or whose abort came first, and to finish one still in flight', () => {
      const incoming = IncomingMigrations.withFixedCapacity('/images', { cpuCores: 2, memoryBytes: 4 * GiB });
      finishOne(incoming, 'mig-1', 'committed', shard('web-0'));
      expect(() => incoming.prepare('mig-1', 'host-1', shard('web-0'))).toThrow('migration mig-1 is committed here; it cannot be prepared again');
      finishOne(incoming, 'mig-2', 'aborted', shard('web-1'));
      expect(() => incoming.prepare('mig-2', 'host-1', shard('web-1'))).toThrow('migration mig-2 is aborted here; it cannot be prepared again');
      // An abort of an id never prepared here (the source's prepare timed out before it arrived).
      incoming.abortingUnknown('mig-3', 'web-2');
      expect(incoming.status('mig-3')).toEqual({ shardId: 'web-2', state: 'aborted', cleanupPending: true });
      incoming.unknownAbortDone('mig-3');
      expect(incoming.status('mig-3')).toEqual({ shardId: 'web-2', state: 'aborted' });
      expect(() => incoming.prepare('mig-3', 'host-1', shard('web-2'))).toThrow('migration mig-3 is aborted here; it cannot be prepared again');
      expect(incoming.prepare('mig-4', 'host-1', shard('web-2')).state).toBe('prepared'); // the shard itself may come, by another migration
      expect(() => incoming.finish(incoming.get('mig-4')!)).toThrow('migration mig-4 is prepared; only a committed or aborted one can finish');
    });
  });
});
