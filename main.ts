/**
 * The example fleet (the cdktf.json app): three agents on this machine (127.0.0.1:7101-7103),
 * three applications of different granularities, and one of each policy.
 * `npm start` synthesizes it and shows cdktf.out/stacks/local-fleet/shard-plan.json.
 */
import { App } from 'cdktf';
import { declareExampleFleet } from './examples/example-fleet';
import { ShardFleet, StaticHostPool } from './constructs';

const app = new App();
const fleet = new ShardFleet(app, 'local-fleet', { fleet: 'demo', generation: 1 });
const pool = new StaticHostPool(fleet, 'local', { costPerHour: 0.05, labels: { site: 'laptop' } });
for (const [index, zone] of (['a', 'b', 'c'] as const).entries()) {
  pool.addHost({
    id: `host-${zone}`,
    address: `127.0.0.1:${7101 + index}`,
    capacity: { cpu: 2, memory: '4GiB', readIops: 2000, writeIops: 1000 },
    labels: { zone },
  });
}
declareExampleFleet(fleet, pool);
app.synth();
