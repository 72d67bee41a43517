/** Builds small fleets for the construct tests and reads back what cdktf reports. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Testing, type TerraformStack } from 'cdktf';
import { ShardFleet, StaticHostPool, type ShardFleetProps } from '../../constructs';

// cdktf's Testing.app makes a new /tmp/cdktf.outdir.* per app and never removes it (some 150 a
// test run, thousands a day); the apps of one test file get theirs under one directory instead,
// removed after the file.
const outRoot = mkdtempSync(join(tmpdir(), 'shardform-cdktf-'));
afterAll(() => rmSync(outRoot, { recursive: true, force: true }));

/** Testing.app with its outdir under this test file's directory (removed after the file). */
export function testApp(options: Parameters<typeof Testing.app>[0] = {}) {
  return Testing.app({ ...options, outdir: mkdtempSync(join(outRoot, 'out-')) });
}

/** A fleet `test` (stack `test-fleet`) with pool `edge`: host-a 2 cores/4GiB, host-b 4 cores/8GiB. */
export function smallFleet(props: ShardFleetProps = { fleet: 'test' }, context?: Record<string, unknown>) {
  const app = testApp(context ? { context } : {});
  const fleet = new ShardFleet(app, 'test-fleet', props);
  const edge = new StaticHostPool(fleet, 'edge', { costPerHour: 0.1 });
  edge.addHost({ id: 'host-a', address: '127.0.0.1:7101', capacity: { cpu: 2, memory: '4GiB' } });
  edge.addHost({ id: 'host-b', address: '127.0.0.1:7102', capacity: { cpu: 4, memory: '8GiB' } });
  return { app, fleet, edge };
}

/** The validation errors cdktf reports at synth, one `[path] message` per entry (empty when valid). */
export function synthErrors(stack: TerraformStack): string[] {
  try {
    Testing.synth(stack, true);
    return [];
  } catch (error) {
    const message = (error as Error).message;
    if (!message.startsWith('Validation failed')) throw error;
    return message
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line.startsWith('['));
  }
}

/** The message of the error `fn` throws (fails the test when it does not throw). */
export function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected an error, none was thrown');
}
