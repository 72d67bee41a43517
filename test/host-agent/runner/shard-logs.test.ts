import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capLogFile, openShardLogs, shardLogPaths } from '../../../host-agent/runner/shard-logs';
import { writeSync } from 'node:fs';

describe('shard logs', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'logs-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps the last maxBytes in <file>.1 and truncates the file when it is over the cap', async () => {
    const file = join(dir, 'stdout.log');
    appendFileSync(file, 'a'.repeat(100) + 'b'.repeat(50));
    expect(await capLogFile(file, 50)).toBe(true);
    expect(statSync(file).size).toBe(0);
    expect(readFileSync(`${file}.1`, 'utf8')).toBe('b'.repeat(50));
  });

  it('leaves a file at or under the cap alone', async () => {
    const file = join(dir, 'stdout.log');
    appendFileSync(file, 'x'.repeat(50));
    expect(await capLogFile(file, 50)).toBe(false);
    expect(existsSync(`${file}.1`)).toBe(false);
    expect(await capLogFile(join(dir, 'missing.log'), 50)).toBe(false);
  });

  it('a writer holding the file in append mode continues at the new end after truncation, leaving no hole', async () => {
    const paths = shardLogPaths(dir, 'web-0');
    const logs = await openShardLogs(paths);
    writeSync(logs.stdout, 'x'.repeat(200));
    await capLogFile(paths.stdout, 10);
    writeSync(logs.stdout, 'after');
    await logs.close();
    expect(readFileSync(paths.stdout, 'utf8')).toBe('after');
  });
});
