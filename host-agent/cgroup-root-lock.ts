/**
 * One agent per cgroup root on a machine. The store's host claim (host-claim.ts) keeps two
 * agents sharing a store apart, but two agents on one machine need not share one: the embedded
 * store lives in each agent's state directory unless the plan names a path, so a second
 * `shardform agent --host host-a --state-dir elsewhere` would claim host-a in its own store,
 * adopt nothing it knows of, and start every shard again in the same cgroups (seen: the first
 * agent's shards ended up killed). What two such agents share is the cgroup root
 * `<owner-prefix>/<host>`, so that is what is locked, on this machine:
 *
 * an exclusive SQLite lock (`locking_mode=EXCLUSIVE`: a POSIX record lock, better-sqlite3 being
 * a dependency already) on `<lock dir>/<owner-prefix>.<host>.lock`, held for the life of the
 * process. The kernel drops it when the process dies, however it dies, and keeps it while the
 * process is merely stopped or hung — a hung agent still owns its shards. Who holds it is
 * written beside it (`.holder.json`), for the refusal to name.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ShardformError } from '../src/errors';
import { writeFileAtomically } from './atomic-file';

/** Where the locks live: `/run` is a tmpfs on systemd hosts, so they go with the boot, like the processes holding them. */
export const DEFAULT_LOCK_DIR = '/run/shardform/locks';

export interface CgroupRootLockOptions {
  readonly hostId: string;
  readonly ownerPrefix: string;
  /** @default SHARDFORM_LOCK_DIR, else /run/shardform/locks */
  readonly dir?: string;
  /** Shown to an agent refused (the holder's state directory). */
  readonly stateDir?: string;
}

interface Holder {
  readonly pid: number;
  readonly since: string;
  readonly hostId?: string;
  readonly stateDir?: string;
}

export class CgroupRootLock {
  private constructor(
    private db: Database.Database | undefined,
    readonly path: string,
  ) {}

  /** Takes the lock now or throws HOST_CLAIMED naming the agent holding it; never waits. */
  static async acquire(options: CgroupRootLockOptions): Promise<CgroupRootLock> {
    const dir = options.dir ?? process.env.SHARDFORM_LOCK_DIR ?? DEFAULT_LOCK_DIR;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `${options.ownerPrefix}.${options.hostId}.lock`);
    const holder: Holder = { pid: process.pid, since: new Date().toISOString(), hostId: options.hostId, ...(options.stateDir ? { stateDir: options.stateDir } : {}) };
    return CgroupRootLock.take(path, holder, (who) =>
      new ShardformError(
        'HOST_CLAIMED',
        '--host',
        options.hostId,
        `--host: another agent runs for host "${options.hostId}" on this machine, in the same cgroups (${options.ownerPrefix}/${options.hostId}): ${who}; stop it first (lock ${path})`,
      ),
    );
  }

  /**
   * One agent per state directory, whatever its host: two agents (of different hosts) sharing
   * one would each take the other's shard records for shards it does not run and delete them,
   * killing the other's shards at its next restart. `<state dir>/agent.lock`, the same kind of
   * lock as the cgroups'; throws HOST_CLAIMED naming the holder's host.
   */
  static async acquireStateDir(options: { stateDir: string; hostId: string }): Promise<CgroupRootLock> {
    mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
    const path = join(options.stateDir, 'agent.lock');
    const holder: Holder = { pid: process.pid, since: new Date().toISOString(), hostId: options.hostId, stateDir: options.stateDir };
    return CgroupRootLock.take(path, holder, (who, held) =>
      new ShardformError(
        'HOST_CLAIMED',
        '--state-dir',
        options.stateDir,
        `--state-dir: another agent${held?.hostId ? ` (host "${held.hostId}")` : ''} uses state directory ${options.stateDir}: ${who}; stop it first, or give each host its own state directory (lock ${path})`,
      ),
    );
  }

  private static async take(path: string, holder: Holder, refused: (who: string, held: Holder | undefined) => Error): Promise<CgroupRootLock> {
    const db = new Database(path, { timeout: 0 });
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      // The first write transaction takes the exclusive lock; in this mode it is kept after COMMIT.
      db.exec('BEGIN EXCLUSIVE; COMMIT');
    } catch (error) {
      db.close();
      if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
      const held = readHolder(path);
      const who = held ? `pid ${held.pid}, since ${held.since}${held.stateDir ? `, state directory ${held.stateDir}` : ''}` : 'a process holding the lock';
      throw refused(who, held);
    }
    try {
      await writeFileAtomically(`${path.replace(/\.lock$/, '')}.holder.json`, `${JSON.stringify(holder)}\n`);
    } catch (error) {
      db.close(); // not held by a start that fails
      throw error;
    }
    return new CgroupRootLock(db, path);
  }

  /** Lets the next agent take the cgroups (the lock also goes when the process ends). Idempotent. */
  release(): void {
    this.db?.close();
    this.db = undefined;
  }
}

function readHolder(lockPath: string): Holder | undefined {
  try {
    const holder = JSON.parse(readFileSync(`${lockPath.replace(/\.lock$/, '')}.holder.json`, 'utf8')) as Holder;
    return Number.isInteger(holder.pid) ? holder : undefined;
  } catch {
    return undefined;
  }
}
