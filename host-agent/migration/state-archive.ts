/**
 * A shard's state directory as one tar file (both strategies), so it travels through the same
 * authenticated, size- and sha256-checked upload as a CRIU image file. GNU tar (the `tar` on
 * every host we support) does the work: it keeps modes, owners (as root) and symlinks, and when
 * extracting refuses members with `..` and strips leading `/` (tar(1), "--absolute-names" is off
 * by default). Unix sockets are skipped (tar: "socket ignored"); CRIU binds a restored one anew.
 */
import { execFile } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MigrationError } from './migration-error';
import type { MigrationRecord } from './migration-record';

const execFileAsync = promisify(execFile);

/**
 * A tar that hangs (a stuck network file system) is killed after 15 min: an abort waits for
 * the unpack in flight, and must not wait forever. Generous: state directories can be large.
 */
const TAR_OPTIONS = { maxBuffer: 1 << 20, timeout: 15 * 60_000, killSignal: 'SIGKILL' as const };

/**
 * What GNU tar leaves out by default, and the shard would miss on the destination:
 * - `--numeric-owner`: owners by uid and gid. By default tar maps the owner's *name* to this
 *   host's uid, and a user named alike on two hosts often has different uids; CRIU restores the
 *   processes with the uids they had, which then do not own their files (EACCES).
 * - `--xattrs --xattrs-include=*`, `--acls`: extended attributes of every namespace (file
 *   capabilities are `security.capability`, and tar's default keeps `user.*` only) and POSIX ACLs
 *   (a shard running as a user that an ACL lets in). Attributes the destination's file system
 *   refuses are a warning of tar's, not a failure.
 * - `--sparse` (packing): a sparse file is archived as the data it holds. Without it a 1 GiB
 *   file with 4 KiB of data is a 1 GiB archive, written, sent and unpacked while the shard is
 *   stopped, and unpacked as 1 GiB of zeros on the destination's disk.
 */
const KEEP = ['--numeric-owner', '--xattrs', '--xattrs-include=*', '--acls'];

/**
 * How long a source waits for the destination to unpack an archive of `bytes`, beyond the
 * request's own timeout: at 20 MiB/s, a fifth of what a slow disk writes, so only a hung tar
 * is given up on; never past tar's own limit.
 */
export function unpackAllowanceMs(bytes: number): number {
  return Math.min(TAR_OPTIONS.timeout, Math.ceil((bytes / (20 * 2 ** 20)) * 1000));
}

const SHARED_MARK_PREFIX = '.shardform-migrating-';

/**
 * The file a source writes into the shard's state directory before it asks the destination to
 * prepare migration `tag`: a destination that finds it there sees the source's own directory
 * (NFS, or the test hosts, which share one disk), and nothing needs to be packed and unpacked.
 * One that does not (its own disk, or a file system whose cache has not seen it yet) gets the
 * archive. The source removes it when the migration ends.
 */
export function sharedStateMark(tag: string): string {
  return `${SHARED_MARK_PREFIX}${tag}`;
}

/** Marks the shard's state directory `dir` (made if absent) for migration `tag`, before its prepare. */
export async function markStateDir(dir: string, tag: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, sharedStateMark(tag)), '');
}

/** Removes the mark of migration `tag`, at its end; nothing when the directory is not known (the application left the plan). */
export async function unmarkStateDir(dir: string | undefined, tag: string): Promise<void> {
  if (dir) await rm(join(dir, sharedStateMark(tag)), { force: true });
}

/**
 * The shard's own state directory (`<stateDirectory>/<shard>`, its SHARDFORM_STATE_DIR and
 * working directory by default), from the application in the plan in memory, not the store: it
 * is packed with the shard stopped, where a store that hangs would hold it stopped.
 */
export async function shardStateDir(record: MigrationRecord, stateDirectoryOf: (record: MigrationRecord) => Promise<string | undefined>): Promise<string> {
  const stateDirectory = await stateDirectoryOf(record);
  if (!stateDirectory) throw new MigrationError('INVALID_MIGRATION', `migration ${record.id}: application ${record.applicationId} is no longer in the plan; its state directory is unknown`);
  return join(stateDirectory, record.shardId);
}

/** The tar file name inside a migration round (matches the upload route's file-name pattern). */
export const STATE_ARCHIVE = 'state.tar';

/** Packs `dir` (created empty when absent: a shard that never wrote state moves as an empty archive). */
export async function packState(dir: string, archive: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  try {
    // Not the marks of migrations: they say where a directory is, not what the shard keeps.
    await execFileAsync('tar', ['--create', '--sparse', ...KEEP, `--exclude=./${SHARED_MARK_PREFIX}*`, '--file', archive, '--directory', dir, '.'], TAR_OPTIONS);
  } catch (error) {
    throw new MigrationError('TRANSFER_FAILED', `cannot pack the state directory ${dir}: ${(error as Error).message}`);
  }
}

/**
 * The arguments of the `tar` that unpacks archive `from` (`-`: its standard input) into `into`:
 * one list for the unpack at the restore and the one on arrival (state-arrival.ts), so both make
 * the same copy.
 */
export function extractArguments(from: string, into: string): string[] {
  return ['--extract', ...KEEP, '--file', from, '--directory', into];
}

/** The sibling directory an unpack of migration `tag` fills before it is swapped in as `dir`. */
export function incomingStateDir(dir: string, tag: string): string {
  return `${dir}.incoming-${tag}`;
}

/**
 * The file, inside the incoming directory, that says an unpack on arrival of migration `tag`
 * finished (tar exited 0 after the whole archive) and which archive it unpacked: its sha256.
 * Written only then (state-arrival.ts), and removed before the directory is swapped in.
 */
export function arrivalRecord(tag: string): string {
  return `.shardform-arrived-${tag}`;
}

/**
 * Whether `incoming` holds a finished unpack on arrival of exactly the archive whose sha256 is
 * `sha256`; if so its record is removed (it is not the shard's). Any doubt (no record, another
 * archive's, a record that is not a plain file, a read error) is a no: the caller unpacks anew.
 */
async function takeArrival(incoming: string, tag: string, sha256: string): Promise<boolean> {
  const record = join(incoming, arrivalRecord(tag));
  try {
    // O_NOFOLLOW: the incoming directory holds what the archive held; only our own plain file counts.
    const handle = await open(record, constants.O_RDONLY | constants.O_NOFOLLOW);
    let content: string;
    try {
      content = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
    if (content !== `${sha256}\n`) return false;
    await rm(record);
    return true;
  } catch {
    return false;
  }
}

/** Where unpackState keeps the directory it replaces until the new content is in place. */
export function replacedStateDir(dir: string, tag: string): string {
  return `${dir}.previous-${tag}`;
}

/**
 * Writes `content` as a new plain file at `path` inside an unpacked state directory: whatever is
 * there is removed first and the file is created exclusively, so that it is never written through
 * a symlink of that name the shard left in its directory (it can know its migration id: the
 * source's mark carries it) to make root on this host overwrite another file.
 */
export async function writeOwnFile(path: string, content: string): Promise<void> {
  await rm(path, { force: true });
  await writeFile(path, content, { flag: 'wx' });
}

/**
 * Unpacks `archive` as the new content of `dir`: into a sibling directory first, then swapped in,
 * so a broken archive leaves `dir` as it was. When that sibling already holds a finished unpack on
 * arrival of the archive whose sha256 is `arrivedSha256` (the manifest's, hashed by the source),
 * it is swapped in without running tar again. The old `dir` is renamed aside, not removed, and
 * stays aside (marked as replaced by migration `tag`) until the migration ends: its commit drops
 * it (tidyStateDir), its abort puts it back (reclaimStateDir). On a file system both hosts share,
 * that old `dir` is the source's own state, which a checkpointed source still has open (its
 * working directory, its files) and runs on if the migration aborts.
 */
export async function unpackState(archive: string, dir: string, tag: string, arrivedSha256?: string): Promise<UnpackOutcome> {
  const incoming = incomingStateDir(dir, tag);
  // Unpacked while it arrived (state-arrival.ts): the tar run here would make the same copy again,
  // with the shard stopped.
  const extracted = !(arrivedSha256 !== undefined && (await takeArrival(incoming, tag, arrivedSha256)));
  if (extracted) {
    await rm(incoming, { recursive: true, force: true });
    await mkdir(incoming, { recursive: true });
    try {
      await execFileAsync('tar', extractArguments(archive, incoming), TAR_OPTIONS);
    } catch (error) {
      await rm(incoming, { recursive: true, force: true });
      throw new MigrationError('TRANSFER_FAILED', `cannot unpack the state directory into ${dir}: ${(error as Error).message}`);
    }
  }
  // Marks the unpacked copy as this migration's: only with the mark in `dir` may the old one be removed.
  await writeOwnFile(join(incoming, unpackedMark(tag)), '');
  const previous = replacedStateDir(dir, tag);
  let hadOne = false;
  if (existsSync(previous)) {
    // A repeated unpack of this migration (its restore asked again): the directory it replaces
    // was set aside by the first and stays there (on a shared file system it is the source's
    // own); what is at `dir` is that first copy, marked, or nothing.
    if (existsSync(dir)) {
      if (!existsSync(join(dir, unpackedMark(tag)))) {
        await rm(incoming, { recursive: true, force: true });
        throw new MigrationError('TRANSFER_FAILED', `cannot put the unpacked state directory in place at ${dir}: it is not the copy an earlier unpack of migration ${tag} made, and ${previous} is set aside; both are kept`);
      }
      await discardCopy(dir, tag);
    }
  } else {
    try {
      await rename(dir, previous);
      hadOne = true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        await rm(incoming, { recursive: true, force: true });
        // EBUSY: `dir` is a mount point; EXDEV cannot happen (a sibling), EACCES/EPERM: not ours to move.
        throw new MigrationError('TRANSFER_FAILED', `cannot set the state directory ${dir} aside for the unpacked one: ${(error as Error).message}`);
      }
    }
  }
  try {
    await rename(incoming, dir);
  } catch (error) {
    // Not swapped in: the old directory goes back where it was, the new one away.
    // If that fails too, both stay: whatever is at `dir` has no mark, so nothing removes the old one.
    if (hadOne) await rename(previous, dir).catch(() => undefined);
    await rm(incoming, { recursive: true, force: true });
    throw new MigrationError('TRANSFER_FAILED', `cannot put the unpacked state directory in place at ${dir}: ${(error as Error).message}`);
  }
  return { extracted };
}

/** What unpackState did: `extracted` false when it swapped in what was unpacked on arrival, without running tar. */
export interface UnpackOutcome {
  readonly extracted: boolean;
}

/** The file that marks a state directory as unpacked by migration `tag` until its swap is finished. */
function unpackedMark(tag: string): string {
  return `.shardform-unpacked-${tag}`;
}

/** Where reclaimStateDir moves this migration's unpacked copy before removing it. */
function discardedStateDir(dir: string, tag: string): string {
  return `${dir}.discarded-${tag}`;
}

/**
 * Undoes what an unpackState of migration `tag` did to `dir`, at its abort: its copy (marked) is
 * moved away and removed, and the directory it had set aside is put back; resolves to whether one
 * was put back. Also when the unpack stopped part-way (`dir` missing, the old one aside). Each
 * step is one rename, so a crash between any two leaves what a retry finishes. Both sides call it:
 * the destination when it aborts, the source before it runs the shard again (on a shared file
 * system the destination's copy is beside the source's state; elsewhere there is nothing to do).
 */
export async function reclaimStateDir(dir: string, tag: string): Promise<boolean> {
  const previous = replacedStateDir(dir, tag);
  await rm(incomingStateDir(dir, tag), { recursive: true, force: true });
  if (existsSync(join(dir, unpackedMark(tag)))) await discardCopy(dir, tag);
  const reclaimed = !existsSync(dir) && existsSync(previous);
  if (reclaimed) await rename(previous, dir);
  // A copy moved away by a run that stopped before removing it.
  await rm(discardedStateDir(dir, tag), { recursive: true, force: true });
  return reclaimed;
}

/** Moves this migration's copy at `dir` away in one rename, then removes it: stopped in between, it is only in the way of nothing. */
async function discardCopy(dir: string, tag: string): Promise<void> {
  const discarded = discardedStateDir(dir, tag);
  await rm(discarded, { recursive: true, force: true });
  await rename(dir, discarded);
  await rm(discarded, { recursive: true, force: true });
}

/**
 * Finishes an unpackState of migration `tag`, at its commit: the old directory it set aside goes
 * once `dir` is its new copy (marked so), then the mark; what an unpack stopped part-way left
 * beside `dir` (its unpacked copy) goes too. Called by the destination (on a shared file system
 * its leftovers are beside the source's).
 */
export async function tidyStateDir(dir: string, tag: string): Promise<void> {
  await rm(incomingStateDir(dir, tag), { recursive: true, force: true });
  // The old directory goes only when `dir` is this migration's unpacked copy (its mark is in it):
  // anything else at `dir` may be in the way of a swap that failed, and the old one the real state.
  if (existsSync(join(dir, unpackedMark(tag)))) {
    await rm(replacedStateDir(dir, tag), { recursive: true, force: true });
    await rm(join(dir, unpackedMark(tag)), { force: true });
  }
}
