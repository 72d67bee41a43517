import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceNumber, kdatCacheWanted, orphanedKeptMount } from '../../../host-agent/checkpoint/criu-kdat-cache';

describe('keeping CRIU\'s kernel probe: the switch', () => {
  it('is on unless SHARDFORM_CRIU_KDAT_CACHE=off, and refuses any other value naming it', () => {
    expect(kdatCacheWanted({})).toBe(true);
    expect(kdatCacheWanted({ SHARDFORM_CRIU_KDAT_CACHE: 'on' })).toBe(true);
    expect(kdatCacheWanted({ SHARDFORM_CRIU_KDAT_CACHE: 'off' })).toBe(false);
    expect(() => kdatCacheWanted({ SHARDFORM_CRIU_KDAT_CACHE: 'no' })).toThrow('SHARDFORM_CRIU_KDAT_CACHE="no" must be on or off');
  });
});

describe('keeping CRIU\'s kernel probe: recognising our own orphaned bind mount in mountinfo', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kdat-mountinfo-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // The keep directory's device as mountinfo writes it (major:minor), from the st_dev Node reports.
  const majorMinor = (dev: number) => `${Math.floor(dev / 0x100) % 0x1000}:${(dev % 0x100) + (Math.floor(dev / 0x100000) % 0x1000) * 0x100}`;

  it('reads paths the kernel escapes (a space is \\040) in the mount point and the mount root', () => {
    const keepDir = join(dir, 'keep dir');
    mkdirSync(keepDir);
    const mountinfo = join(dir, 'mountinfo');
    const dev = majorMinor(statSync(keepDir).dev);
    const target = '/run/criu kdat/criu.kdat';
    writeFileSync(mountinfo, `25 24 ${dev} / /dev/shm rw,relatime - tmpfs tmpfs rw\n900 25 ${dev} /keep\\040dir/criu.kdat//deleted /run/criu\\040kdat/criu.kdat rw,relatime - tmpfs tmpfs rw\n`);
    expect(orphanedKeptMount(target, keepDir, mountinfo)).toBe(true);
    // Not ours: another file, or another directory's name.
    writeFileSync(mountinfo, `900 25 ${dev} /other\\040dir/criu.kdat//deleted /run/criu\\040kdat/criu.kdat rw,relatime - tmpfs tmpfs rw\n`);
    expect(orphanedKeptMount(target, keepDir, mountinfo)).toBe(false);
  });

  it('encodes device numbers as stat does, also past 32 bits', () => {
    expect(deviceNumber(0, 23)).toBe(23);
    expect(deviceNumber(8, 1)).toBe(0x801);
    expect(deviceNumber(0, 0x80000)).toBe(0x80000000); // anonymous devices reach minor 2^20 - 1
    expect(deviceNumber(0, 0xfffff)).toBe(0xfff000ff);
    expect(deviceNumber(0x1234, 5)).toBe(0x234 * 0x100 + 5 + 1 * 2 ** 44);
  });
});
