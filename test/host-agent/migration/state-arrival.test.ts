/**
 * Unpacking the state archive while it arrives (real GNU tar, temp directories): the restore's
 * unpack then only swaps the copy in, and only when it is a finished copy of exactly the archive
 * the source's manifest names; anything else is unpacked from the file as before.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { arrivalRecord, packState, unpackState } from '../../../host-agent/migration/state-archive';
import { StateArrival } from '../../../host-agent/migration/state-arrival';

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let work: string;
beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'sf-arrival-'));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

/** An archive of a state directory holding `files` (name → content), as the source packs it. */
async function archiveOf(name: string, files: Record<string, string>): Promise<{ path: string; bytes: Buffer }> {
  const from = join(work, `from-${name}`);
  mkdirSync(from, { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(join(from, file), content);
  const path = join(work, `${name}.tar`);
  await packState(from, path);
  return { path, bytes: readFileSync(path) };
}

/** Feeds `bytes` in small chunks, as an upload's body arrives, then ends it. */
async function arrive(arrival: StateArrival, bytes: Buffer, chunkBytes = 700): Promise<boolean> {
  for (let at = 0; at < bytes.length; at += chunkBytes) await arrival.feed(bytes.subarray(at, at + chunkBytes));
  return arrival.finish(sha(bytes));
}

/** Every name under `dir`, at any depth. */
function namesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true }) as string[];
}

describe('state archive unpacked on arrival', () => {
  it('leaves a finished copy the restore swaps in without running tar, its record never reaching the state directory', async () => {
    const a = await archiveOf('a', { counter: '42', wal: 'x'.repeat(100_000) });
    const dir = join(work, 'state', 'web-0');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'counter'), '41');
    expect(await arrive(new StateArrival(dir, 'm1'), a.bytes)).toBe(true);
    expect(readFileSync(join(`${dir}.incoming-m1`, arrivalRecord('m1')), 'utf8')).toBe(`${sha(a.bytes)}\n`);

    // The archive file is gone: a restore that ran tar on it would fail.
    rmSync(a.path);
    expect(await unpackState(a.path, dir, 'm1', sha(a.bytes))).toEqual({ extracted: false });
    expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('42');
    expect(readFileSync(join(dir, 'wal'), 'utf8')).toHaveLength(100_000);
    expect(namesUnder(dir).filter((n) => n.includes('arrived'))).toEqual([]);
    expect(existsSync(`${dir}.incoming-m1`)).toBe(false);
  });

  it('unpacks from the file when what arrived unpacked is another archive than the manifest names', async () => {
    const a = await archiveOf('a', { counter: '42' });
    const b = await archiveOf('b', { counter: '43' });
    const dir = join(work, 'state', 'web-0');
    expect(await arrive(new StateArrival(dir, 'm1'), a.bytes)).toBe(true);
    expect(await unpackState(b.path, dir, 'm1', sha(b.bytes))).toEqual({ extracted: true });
    expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('43');
    expect(namesUnder(dir).filter((n) => n.includes('arrived'))).toEqual([]);
  });

  it('unpacks from the file when the unpack on arrival never finished (the upload broke off), and leaves no directory of it', async () => {
    const a = await archiveOf('a', { counter: '42', wal: 'y'.repeat(200_000) });
    const dir = join(work, 'state', 'web-0');
    const arrival = new StateArrival(dir, 'm1');
    await arrival.feed(a.bytes.subarray(0, 100_000));
    await arrival.abandon('the upload broke off');
    expect(existsSync(`${dir}.incoming-m1`)).toBe(false);
    expect(await arrival.finish(sha(a.bytes))).toBe(false);
    expect(await unpackState(a.path, dir, 'm1', sha(a.bytes))).toEqual({ extracted: true });
    expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('42');
  });

  it('gives a broken archive up without failing, keeping nothing, and the restore then fails as it always did', async () => {
    const dir = join(work, 'state', 'web-0');
    const junk = Buffer.alloc(64 * 1024, 7);
    writeFileSync(join(work, 'junk.tar'), junk);
    const arrival = new StateArrival(dir, 'm1');
    expect(await arrive(arrival, junk)).toBe(false);
    expect(arrival.problem).toMatch(/^tar exited with 2/);
    expect(existsSync(`${dir}.incoming-m1`)).toBe(false);
    await expect(unpackState(join(work, 'junk.tar'), dir, 'm1', sha(junk))).rejects.toMatchObject({ code: 'TRANSFER_FAILED', message: expect.stringContaining(`cannot unpack the state directory into ${dir}`) });
  });

  it("writes its record as a file of its own, never through a symlink of that name the shard's archive held", async () => {
    const from = join(work, 'from-evil');
    mkdirSync(from);
    const outside = join(work, 'outside');
    writeFileSync(outside, 'untouched');
    symlinkSync(outside, join(from, arrivalRecord('m1')));
    await packState(from, join(work, 'evil.tar'));
    const bytes = readFileSync(join(work, 'evil.tar'));
    const dir = join(work, 'state', 'web-0');
    expect(await arrive(new StateArrival(dir, 'm1'), bytes)).toBe(true);
    expect(readFileSync(outside, 'utf8')).toBe('untouched');
    expect(lstatSync(join(`${dir}.incoming-m1`, arrivalRecord('m1'))).isFile()).toBe(true);
  });

  it("unpackState writes its own mark as a file of its own too, never through a symlink of that name the shard's archive held", async () => {
    const from = join(work, 'from-evil-mark');
    mkdirSync(from);
    const outside = join(work, 'outside-mark');
    writeFileSync(outside, 'untouched');
    symlinkSync(outside, join(from, '.shardform-unpacked-m7'));
    await packState(from, join(work, 'evil-mark.tar'));
    const dir = join(work, 'state', 'web-7');
    expect(await unpackState(join(work, 'evil-mark.tar'), dir, 'm7')).toEqual({ extracted: true });
    expect(readFileSync(outside, 'utf8')).toBe('untouched');
    expect(lstatSync(join(dir, '.shardform-unpacked-m7')).isFile()).toBe(true);
  });

  it('a later unpack on arrival of migration m1 starts once the one it replaces is given up, in a fresh directory', async () => {
    const a = await archiveOf('a', { counter: '42', only_in_a: 'a' });
    const b = await archiveOf('b', { counter: '43' });
    const dir = join(work, 'state', 'web-0');
    const first = new StateArrival(dir, 'm1');
    expect(await arrive(first, a.bytes)).toBe(true);
    const second = new StateArrival(dir, 'm1', { after: first.abandon('replaced') });
    expect(await arrive(second, b.bytes)).toBe(true);
    expect(await unpackState(b.path, dir, 'm1', sha(b.bytes))).toEqual({ extracted: false });
    expect(readdirSync(dir).sort()).toEqual(['.shardform-unpacked-m1', 'counter']);
    expect(readFileSync(join(dir, 'counter'), 'utf8')).toBe('43');
  });
});

it('gives the unpack up when tar takes no byte for stallMs (a hung file system), and the upload goes on', async () => {
  const dir = join(work, 'state', 'web-0');
  const arrival = new StateArrival(dir, 'm1', { stallMs: 100 });
  await arrival.feed(Buffer.alloc(0));
  // Its tar, stopped: it takes no byte, as on a hung file system.
  const tar = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).find((entry) => {
    try {
      return readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(arrival.incoming);
    } catch {
      return false;
    }
  });
  expect(tar).toBeDefined();
  process.kill(Number(tar), 'SIGSTOP');
  // More than a pipe holds, so that a write has to wait for tar.
  expect(await arrive(arrival, Buffer.alloc(1 << 20, 1), 64 * 1024)).toBe(false);
  expect(arrival.problem).toBe('tar took no byte for 100 ms');
  expect(existsSync(arrival.incoming)).toBe(false);
});
