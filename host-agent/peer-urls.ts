/** Where the other agents of the fleet listen: migration's client and the forecast's hand-over use it. */
import type { Plan } from '../src/contracts/plan-schema';

/** Agent base URLs of the plan's other hosts (static pools): `http://<address>[:<agent port>]` (pure). */
export function peerUrls(plan: Plan, selfHostId: string): Map<string, string> {
  const urls = new Map<string, string>();
  for (const pool of plan.pools) {
    for (const host of pool.hosts) {
      if (host.id === selfHostId) continue;
      const hasPort = /:\d+$/.test(host.address) && !/^\[[^\]]*\]$/.test(host.address);
      urls.set(host.id, `http://${hasPort ? host.address : `${host.address}:${plan.agent.port}`}`);
    }
  }
  return urls;
}
