import { peerUrls } from '../../../host-agent/peer-urls';
import { chooseStrategy } from '../../../host-agent/migration/migration-strategy';
import { StrategyEffects } from '../../../host-agent/migration/strategy-effects';
import { MigrationJournal } from '../../../host-agent/migration/migration-journal';
import { FakeEffects, MemoryJournalStore, recordIn } from '../../helpers/migration-fakes';
import { examplePlan } from '../../helpers/plan-fixture';

describe('peer agent URLs from the plan', () => {
  it('lists every other host of the static pools, adding the agent port where the address has none', () => {
    const plan = examplePlan((p) => {
      p.agent.port = 7300;
      p.pools[0]!.hosts = [
        { ...p.pools[0]!.hosts[0]!, id: 'host-a', address: '10.0.0.1:7101' },
        { ...p.pools[0]!.hosts[0]!, id: 'host-b', address: '10.0.0.2' },
        { ...p.pools[0]!.hosts[0]!, id: 'host-c', address: 'agent-c.internal' },
      ];
    });
    expect([...peerUrls(plan, 'host-a')]).toEqual([
      ['host-b', 'http://10.0.0.2:7300'],
      ['host-c', 'http://agent-c.internal:7300'],
    ]);
    expect(peerUrls(plan, 'host-b').get('host-a')).toBe('http://10.0.0.1:7101');
  });
});

describe('migration strategy', () => {
  it('uses what the plan declares, but moves a checkpoint shard holding established TCP connections by restart', () => {
    expect(chooseStrategy({ declared: 'checkpoint', holdsEstablishedTcp: false })).toEqual({ strategy: 'checkpoint', why: 'the plan declares the checkpoint strategy' });
    expect(chooseStrategy({ declared: 'checkpoint', holdsEstablishedTcp: true })).toEqual({ strategy: 'restart', why: 'it holds established TCP connections' });
    expect(chooseStrategy({ declared: 'restart', holdsEstablishedTcp: false })).toEqual({ strategy: 'restart', why: 'the plan declares the restart strategy' });
  });

  it('refuses a step of a strategy the host cannot run, naming it', () => {
    const effects = new StrategyEffects({ checkpoint: new FakeEffects(new MigrationJournal(new MemoryJournalStore())) });
    expect(() => effects.prepare({ ...recordIn('planned'), strategy: 'restart' })).toThrow(/this host cannot run the restart strategy/);
  });
});
