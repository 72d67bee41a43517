import { closeSync, mkdirSync, openSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { anonymousBytesOf, directoryBytes, freeBytesUnder, IMAGE_SPACE_MARGIN, imageSpaceShortfall, parseAnonymousBytes } from '../../../host-agent/migration/image-space';
import { tempDir } from '../../helpers/cli';

const ROLLUP = `55f40c4a0000-7fffd53db000 ---p 00000000 00:00 0                          [rollup]
Rss:                1620 kB
Pss_Anon:            116 kB
Private_Dirty:       116 kB
Anonymous:         20480 kB
Pss_Shmem:           512 kB
AnonHugePages:      2048 kB
Swap:               1024 kB
SwapPss:            1024 kB
`;

describe('disk room for migration images', () => {
  const dir = tempDir('shardform-image-space');
  afterAll(() => dir.remove());

  it('estimates an image from the anonymous memory of every process, resident or swapped, and its share of shared memory', async () => {
    expect(parseAnonymousBytes(ROLLUP)).toBe((20480 + 512 + 1024) * 1024); // not AnonHugePages (inside Anonymous), not SwapPss
    expect(parseAnonymousBytes('Rss: 4 kB\n')).toBeUndefined();
    const proc = join(dir.path, 'proc');
    for (const pid of [10, 11]) {
      mkdirSync(join(proc, String(pid)), { recursive: true });
      writeFileSync(join(proc, String(pid), 'smaps_rollup'), ROLLUP);
    }
    expect(await anonymousBytesOf([10, 11], proc)).toBe(2 * (20480 + 512 + 1024) * 1024);
    expect(await anonymousBytesOf([10, 12], proc)).toBeUndefined(); // a process that ended: no estimate, no refusal
    expect(await anonymousBytesOf([process.pid])).toBeGreaterThan(0);
  });

  it('measures a state directory by what its files take on disk (a sparse file by its data), not following symlinks out of it', async () => {
    const state = join(dir.path, 'state');
    mkdirSync(join(state, 'sub'), { recursive: true });
    writeFileSync(join(state, 'sub', 'db'), Buffer.alloc(1 << 20, 1));
    const fd = openSync(join(state, 'sparse'), 'w');
    writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 2 ** 30);
    closeSync(fd);
    symlinkSync('/usr', join(state, 'out'));
    const bytes = (await directoryBytes(state))!;
    expect(bytes).toBeGreaterThanOrEqual(1 << 20);
    expect(bytes).toBeLessThan(2 << 20);
    expect(await directoryBytes(join(dir.path, 'no-such-state'))).toBe(0); // packed as an empty archive
  });

  it('measures free space where the images go, or under the nearest parent that exists', () => {
    const free = freeBytesUnder(dir.path);
    expect(free).toBeGreaterThan(0);
    expect(freeBytesUnder(join(dir.path, 'not', 'yet', 'made'))).toBeGreaterThan(0);
  });

  it('says what is missing, with the numbers, and never refuses on what it could not measure', () => {
    const GiB = 2 ** 30;
    expect(imageSpaceShortfall({ dir: '/var/lib/shardform/migrations', free: 10 * GiB, imageBytes: GiB, what: 'the dump' })).toBeUndefined();
    expect(imageSpaceShortfall({ dir: '/var/lib/shardform/migrations', free: GiB + IMAGE_SPACE_MARGIN, imageBytes: GiB, what: 'the dump' })).toBeUndefined();
    expect(imageSpaceShortfall({ dir: '/var/lib/shardform/migrations', free: GiB, imageBytes: GiB, what: 'the dump' })).toBe(
      'not enough disk under /var/lib/shardform/migrations for the dump: ~1088 MiB needed (1024 MiB of memory + 64 MiB), 1024 MiB free',
    );
    expect(imageSpaceShortfall({ dir: '/d', free: 2 * GiB, imageBytes: GiB, copies: 2, what: 'a shadow' })).toContain('~2112 MiB needed (2 x 1024 MiB of memory + 64 MiB)');
    expect(imageSpaceShortfall({ dir: '/d', free: 2 * GiB, imageBytes: GiB, stateBytes: GiB, what: 'the dump' })).toContain('~2112 MiB needed (1024 MiB of memory + 1024 MiB of state directory + 64 MiB)');
    expect(imageSpaceShortfall({ dir: '/d', free: undefined, imageBytes: GiB, what: 'x' })).toBeUndefined();
    expect(imageSpaceShortfall({ dir: '/d', free: 0, imageBytes: undefined, what: 'x' })).toBeUndefined();
  });
});
