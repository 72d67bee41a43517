import { join } from 'node:path';
import { detectCgroupDriver, type CgroupDriver } from '../../../host-agent/cgroups';
import { HostAgentError } from '../../../host-agent/errors';
import { ShardformError } from '../../../src/errors';
import { fixtureTree, V2_SHARD_FILES, type Fixture } from './fixture-tree';

describe('shard ids and error reports', () => {
  let fx: Fixture;
  let driver: CgroupDriver;

  beforeEach(() => {
    fx = fixtureTree('v2');
    driver = detectCgroupDriver({ root: fx.root, hostId: 'host-a' });
  });
  afterEach(() => fx.cleanup());

  const BAD = ['../../etc', '..', '.', 'a/b', 'Web', '-web', '', 'x'.repeat(64)];

  it.each(BAD)('refuses shard id %j in every operation before touching the filesystem', async (bad) => {
    const before = fx.snapshot();
    const ops: (() => unknown)[] = [
      () => driver.create(bad),
      () => driver.remove(bad),
      () => driver.exists(bad),
      () => driver.setLimits(bad, { cpuCores: 1 }),
      () => driver.readLimits(bad),
      () => driver.freeze(bad),
      () => driver.thaw(bad),
      () => driver.isFrozen(bad),
      () => driver.killAll(bad),
      () => driver.pids(bad),
      () => driver.usage(bad),
      () => driver.oomKills(bad),
      () => driver.forget(bad),
      () => driver.procsFiles(bad),
      () => driver.paths(bad),
    ];
    for (const op of ops) {
      const outcome = (async () => op())();
      await expect(outcome).rejects.toBeInstanceOf(ShardformError);
      await expect(outcome).rejects.toMatchObject({ code: 'INVALID_ID', field: 'shardId', value: bad });
    }
    expect(fx.snapshot()).toEqual(before);
  });

  it('names the id rule in the message', async () => {
    await expect(driver.create('../../etc')).rejects.toThrow(
      `shardId: "../../etc" is not a valid id; ids are 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit`,
    );
  });

  it('refuses a bad host id or owner prefix when the driver is made', () => {
    expect(() => detectCgroupDriver({ root: fx.root, hostId: '../h' })).toThrow(expect.objectContaining({ code: 'INVALID_ID', field: 'hostId' }));
    expect(() => detectCgroupDriver({ root: fx.root, hostId: 'h', ownerPrefix: 'a/b' })).toThrow(expect.objectContaining({ code: 'INVALID_ID', field: 'ownerPrefix' }));
  });

  it('lists only directories whose names are valid ids', async () => {
    await driver.create('good-1');
    fx.files('', 'shardform/host-a/Not_An_Id', {});
    fx.files('', 'shardform/host-a', { 'cgroup.procs': '' });
    expect(await driver.list()).toEqual(['good-1']);
  });

  it('lists nothing when the host root does not exist yet', async () => {
    expect(await driver.list()).toEqual([]);
  });

  it('reports SHARD_NOT_FOUND naming the shard and its directory', async () => {
    const dir = join(fx.root, 'shardform/host-a/ghost');
    await expect(driver.setLimits('ghost', { cpuCores: 1 })).rejects.toMatchObject({
      code: 'SHARD_NOT_FOUND',
      shardId: 'ghost',
      field: dir,
      message: `shard ghost: no cgroup at ${dir}; create the shard first`,
    });
    await expect(driver.usage('ghost')).rejects.toMatchObject({ code: 'SHARD_NOT_FOUND' });
  });

  it('reports a failed write with the shard, the file and the value', async () => {
    await driver.create('web-1'); // fixture: no io.max, as when the io controller is not enabled
    fx.files('', 'shardform/host-a/web-1', { 'cpu.max': 'max 100000\n' });
    const file = join(fx.root, 'shardform/host-a/web-1/io.max');
    await expect(driver.setLimits('web-1', { io: { device: '254:0', readIops: 10 } })).rejects.toMatchObject({
      code: 'CGROUP_WRITE_FAILED',
      shardId: 'web-1',
      field: file,
      value: '254:0 riops=10',
      message: `shard web-1: writing "254:0 riops=10" to ${file} failed (ENOENT)`,
    });
  });

  it('checks limits before writing anything', async () => {
    await driver.create('web-1');
    fx.files('', 'shardform/host-a/web-1', V2_SHARD_FILES);
    const before = fx.read(join(fx.root, 'shardform/host-a/web-1/cpu.max'));
    await expect(driver.setLimits('web-1', { cpuCores: 2, memoryBytes: -5 })).rejects.toMatchObject({ code: 'INVALID_LIMITS', field: 'memoryBytes' });
    expect(fx.read(join(fx.root, 'shardform/host-a/web-1/cpu.max'))).toBe(before);
  });

  it('reports a file missing from an existing shard as CGROUP_READ_FAILED, not as a missing shard', async () => {
    await driver.create('web-1');
    fx.files('', 'shardform/host-a/web-1', { 'cgroup.procs': '' }); // no cpu.stat: cpu controller off
    const file = join(fx.root, 'shardform/host-a/web-1/cpu.stat');
    await expect(driver.usage('web-1')).rejects.toMatchObject({
      code: 'CGROUP_READ_FAILED',
      field: file,
      message: `shard web-1: reading ${file} failed (ENOENT)`,
    });
  });

  it('reports an unparsable file with the shard, the file and its text', async () => {
    await driver.create('web-1');
    fx.files('', 'shardform/host-a/web-1', { ...V2_SHARD_FILES, 'memory.current': 'lots\n' });
    const file = join(fx.root, 'shardform/host-a/web-1/memory.current');
    await expect(driver.usage('web-1')).rejects.toMatchObject({
      code: 'CGROUP_PARSE_FAILED',
      field: file,
      value: 'lots',
      message: `shard web-1: ${file} holds "lots"; expected one number`,
    });
  });

  it('refuses to remove a cgroup that still has content (EBUSY/ENOTEMPTY) as SHARD_BUSY', async () => {
    await driver.create('web-1');
    fx.files('', 'shardform/host-a/web-1', { 'cgroup.procs': '' });
    const err = await driver.remove('web-1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostAgentError);
    expect(err).toMatchObject({ code: 'SHARD_BUSY', shardId: 'web-1' });
  });

  it('treats removing a shard that does not exist as done', async () => {
    await expect(driver.remove('never-made')).resolves.toBeUndefined();
    await expect(driver.killAll('never-made')).resolves.toBeUndefined();
  });
});
