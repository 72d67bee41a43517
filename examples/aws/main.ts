/**
 * The example fleet on EC2: the same applications and policies as the local example
 * (../example-fleet.ts) on an AwsHostPool. Synthesizes without an AWS account:
 *   cd examples/aws && CHECKPOINT_DISABLE=1 npx cdktf synth
 */
import { App } from 'cdktf';
import { AwsProvider } from '@cdktf/provider-aws/lib/provider';
import { AwsHostPool, ShardFleet } from '../../constructs';
import { declareExampleFleet } from '../example-fleet';

const app = new App();
// EC2 hosts are separate machines, so they need one store they all reach (the embedded default is
// a file on each host, and synth refuses it here: no shard could migrate). Replace the address
// with your etcd's, and let the fleet's security group (pool.securityGroup) reach it on 2379.
const fleet = new ShardFleet(app, 'aws-fleet', { fleet: 'demo', generation: 1, store: { kind: 'etcd', endpoints: ['http://10.0.0.10:2379'] } });
new AwsProvider(fleet, 'aws', { region: 'eu-west-1' });
const pool = new AwsHostPool(fleet, 'ec2', {
  instanceType: 'm6i.large',
  minHosts: 3,
  maxHosts: 6,
  labels: { site: 'eu-west-1' },
});
declareExampleFleet(fleet, pool);
app.synth();
