import { rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bareReaderFor, detectCgroupDriver, KeptOpenCgroupReader, usageFilesOf } from '../../../host-agent/cgroups';
import { fixtureTree, openFilesUnder, UNIFIED_CORE_FILES, V1_SHARD_FILES, V2_SHARD_FILES } from './fixture-tree';

describe('bare reader (the sampler benchmark baseline)', () => {
  it('reads exactly the files usage() reads on v2, and counts their bytes', async () => {
    const fx = fixtureTree('v2');
    try {
      const driver = detectCgroupDriver({ root: fx.root, hostId: 'host-a' });
      for (const id of ['a', 'b']) {
        await driver.create(id);
        fx.files('', `shardform/host-a/${id}`, V2_SHARD_FILES);
      }
      const dir = join(fx.root, 'shardform/host-a/a');
      expect(await driver.usageFiles('a')).toEqual(
        ['cpu.stat', 'memory.events', 'io.stat', 'memory.current', 'memory.peak', 'cpu.pressure', 'memory.pressure', 'io.pressure'].map((f) => join(dir, f)),
      );
      const reader = await bareReaderFor(driver, ['a', 'b']);
      expect(reader.paths).toHaveLength(16);
      const size = reader.paths.reduce((acc, p) => acc + statSync(p).size, 0);
      expect(size).toBeGreaterThan(0);
      expect(reader.readAll()).toBe(size);
      // A shard removed between rounds is skipped, not fatal.
      rmSync(join(dir, 'cpu.stat'));
      expect(reader.readAll()).toBe(size - V2_SHARD_FILES['cpu.stat']!.length);
    } finally {
      fx.cleanup();
    }
  });

  it('on a hybrid host, reads the v1 counters and the unified PSI files', async () => {
    const fx = fixtureTree('hybrid');
    try {
      const driver = detectCgroupDriver({ root: fx.root, hostId: 'host-a' });
      await driver.create('a');
      for (const [c, files] of Object.entries(V1_SHARD_FILES)) if (c !== 'freezer') fx.files(c, 'shardform/host-a/a', files);
      fx.files('unified', 'shardform/host-a/a', UNIFIED_CORE_FILES);
      const rel = (await driver.usageFiles('a')).map((p) => p.slice(fx.root.length + 1).replace('shardform/host-a/a/', ''));
      expect(rel.sort()).toEqual(
        [
          'blkio/blkio.throttle.io_service_bytes',
          'blkio/blkio.throttle.io_serviced',
          'cpu/cpu.stat',
          'cpuacct/cpuacct.usage',
          'memory/memory.max_usage_in_bytes',
          'memory/memory.oom_control',
          'memory/memory.usage_in_bytes',
          'unified/cpu.pressure',
          'unified/io.pressure',
          'unified/memory.pressure',
        ].sort(),
      );
    } finally {
      fx.cleanup();
    }
  });

  it('has a second, kept-open baseline: the same files opened once and re-read at offset 0', async () => {
    const fx = fixtureTree('v2');
    try {
      const driver = detectCgroupDriver({ root: fx.root, hostId: 'host-a' });
      await driver.create('a');
      fx.files('', 'shardform/host-a/a', V2_SHARD_FILES);
      const paths = await usageFilesOf(driver, ['a']);
      const kept = new KeptOpenCgroupReader([...paths, join(fx.root, 'no-such-file')]);
      expect(openFilesUnder(fx.root)).toHaveLength(paths.length);
      const size = paths.reduce((acc, p) => acc + statSync(p).size, 0);
      expect(kept.readAll()).toBe(size);
      expect(kept.readAll()).toBe((await bareReaderFor(driver, ['a'])).readAll());
      // Rewritten in place, as the kernel's counters change: the next round reads the new text.
      const before = statSync(paths[0]!).size;
      const text = 'usage_usec 123456789\n';
      writeFileSync(paths[0]!, text);
      expect(kept.readAll()).toBe(size - before + text.length);
      kept.close();
      expect(openFilesUnder(fx.root)).toEqual([]);
    } finally {
      fx.cleanup();
    }
  });
});
