import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readIncomingRecord, writeIncomingRecord } from '../../../host-agent/migration/incoming-record';
import { tempDir } from '../../helpers/cli';

describe('incoming migration record (what a restarted destination needs to tidy)', () => {
  const dir = tempDir('shardform-incoming-record');
  afterAll(() => dir.remove());
  const migrationDir = (id: string) => {
    const path = join(dir.path, id);
    mkdirSync(path, { recursive: true });
    return path;
  };

  it('reads back what prepare wrote, leaving no temporary file', async () => {
    const path = migrationDir('mig-1');
    await writeIncomingRecord(path, 'mig-1', { shardId: 'web-0', stateDirectory: '/var/lib/web' });
    expect(await readIncomingRecord(path, 'mig-1')).toEqual({ record: { version: 1, migrationId: 'mig-1', shardId: 'web-0', stateDirectory: '/var/lib/web' } });
    expect(readdirSync(path)).toEqual(['migration.json']);
  });

  it('says why when the record is there but cannot be read (EIO, EISDIR): the commit or abort goes on without it', async () => {
    const path = migrationDir('mig-4');
    mkdirSync(join(path, 'migration.json'));
    expect(await readIncomingRecord(path, 'mig-4')).toEqual({ problem: `cannot read ${join(path, 'migration.json')}: EISDIR` });
  });

  it('fails, for the commit or abort to be retried, on a read error that passes (too many open files)', async () => {
    const path = migrationDir('mig-5');
    await writeIncomingRecord(path, 'mig-5', { shardId: 'web-0', stateDirectory: '/var/lib/web' });
    const fsPromises = require('node:fs/promises') as typeof import('node:fs/promises');
    const spy = jest.spyOn(fsPromises, 'readFile').mockRejectedValueOnce(Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' }));
    try {
      await expect(readIncomingRecord(path, 'mig-5')).rejects.toMatchObject({ code: 'EMFILE' });
    } finally {
      spy.mockRestore();
    }
    expect((await readIncomingRecord(path, 'mig-5')).record?.shardId).toBe('web-0');
  });

  it('knows nothing, without a problem, when there is no record', async () => {
    expect(await readIncomingRecord(join(dir.path, 'never-prepared'), 'mig-2')).toEqual({});
  });

  it('knows nothing, and says why, from a torn, invalid or another migration\'s record', async () => {
    const path = migrationDir('mig-3');
    const file = join(path, 'migration.json');
    writeFileSync(file, '{"version":1,"migrationId":"mig-3"');
    expect((await readIncomingRecord(path, 'mig-3')).problem).toMatch(new RegExp(`^${file} is not JSON: `));
    writeFileSync(file, JSON.stringify({ version: 1, migrationId: 'mig-3', shardId: 'web-0', stateDirectory: 'relative/dir' }));
    expect(await readIncomingRecord(path, 'mig-3')).toEqual({ problem: `${file} is not a migration record: stateDirectory: must match pattern "^/[^\\u0000]*$" (got "relative/dir")` });
    writeFileSync(file, JSON.stringify({ version: 1, migrationId: 'mig-9', shardId: 'web-0', stateDirectory: '/var/lib/web' }));
    expect(await readIncomingRecord(path, 'mig-3')).toEqual({ problem: `${file} is the record of migration mig-9, not mig-3` });
  });
});
