import { peerUrls } from '../../../host-agent/migration/migration-service';
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
