/**
 * The error catalogue of the host agent (after cdktf's lib/errors.ts, like src/errors.ts on
 * the shared side). Every error carries a stable `code`, the shard it concerns, the cgroup
 * file (or field) and the value involved, so logs, the API and tests match on data rather
 * than on message text.
 */
import { showValue } from '../src/errors';

export type HostAgentErrorCode =
  /** A limits object the kernel would refuse (or misread): checked before anything is written. */
  | 'INVALID_LIMITS'
  /** Writing a cgroup interface file failed; `cause` holds the errno error. */
  | 'CGROUP_WRITE_FAILED'
  /** Reading a cgroup interface file failed. */
  | 'CGROUP_READ_FAILED'
  /** A cgroup file held text we cannot parse. */
  | 'CGROUP_PARSE_FAILED'
  /** The shard's cgroup does not exist. */
  | 'SHARD_NOT_FOUND'
  /** The shard's cgroup still has processes (rmdir gave EBUSY, or they survived SIGKILL). */
  | 'SHARD_BUSY'
  /** A memory limit below what the shard uses and the kernel cannot reclaim (v1: EBUSY; v2: refused before the write, which would OOM-kill). */
  | 'MEMORY_IN_USE'
  /** The kernel did not report the requested freezer state in time. */
  | 'FREEZE_TIMEOUT'
  /** No cgroup hierarchy we can drive was found under the root. */
  | 'UNSUPPORTED_CGROUP_LAYOUT'
  // Runner and keeper (host-agent/runner, host-agent/reconcile):
  /** The shard is not managed by this agent (no record, no cgroup). */
  | 'SHARD_UNKNOWN'
  /** The shard's cgroup holds no workload (no PID-namespace init) where one was expected. */
  | 'SHARD_NOT_RUNNING'
  /** Migration holds the shard; the keeper will not start, stop, resize, freeze or drain it. */
  | 'SHARD_HELD'
  /** The shard already runs here, so it cannot be prepared as an incoming migration. */
  | 'SHARD_EXISTS'
  /** The workload could not be started (spawn failed, or its PID-namespace init never appeared). */
  | 'WORKLOAD_START_FAILED'
  /** A runner or keeper option is out of range. */
  | 'INVALID_OPTION';

export class HostAgentError extends Error {
  constructor(
    readonly code: HostAgentErrorCode,
    /** The shard concerned, when there is one. */
    readonly shardId: string | undefined,
    /** The cgroup file (absolute path) or the limits field, e.g. `cpuCores`. */
    readonly field: string,
    /** The offending or attempted value. */
    readonly value: unknown,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'HostAgentError';
  }
}

/** showValue, except that NaN and Infinity stay themselves (JSON would print null). */
function show(value: unknown): string {
  return typeof value === 'number' && !Number.isFinite(value) ? String(value) : showValue(value);
}

function errnoOf(cause: unknown): string {
  const err = cause as NodeJS.ErrnoException | undefined;
  return err?.code ?? (err instanceof Error ? err.message : String(cause));
}

export function invalidLimits(shardId: string, field: string, value: unknown, valid: string): HostAgentError {
  return new HostAgentError(
    'INVALID_LIMITS',
    shardId,
    field,
    value,
    `shard ${shardId}: limits.${field} ${show(value)} is invalid; ${valid}`,
  );
}

export function writeFailed(shardId: string, file: string, value: string, cause: unknown): HostAgentError {
  return new HostAgentError(
    'CGROUP_WRITE_FAILED',
    shardId,
    file,
    value,
    `shard ${shardId}: writing ${showValue(value)} to ${file} failed (${errnoOf(cause)})`,
    { cause },
  );
}

/**
 * A memory limit the shard's memory in use does not fit under: `inUse` is what the driver read
 * (v2's working set), or undefined when the kernel said so itself (v1's EBUSY after reclaim).
 */
export function memoryInUse(shardId: string, file: string, limitBytes: number, inUse: number | undefined, cause?: unknown): HostAgentError {
  const why =
    inUse === undefined
      ? `the kernel refused it (EBUSY): the shard uses more, and reclaim could not free enough`
      : `the shard uses ${inUse} bytes that cannot be reclaimed (memory.current less inactive file cache, ${file}), and the kernel would OOM-kill it`;
  return new HostAgentError('MEMORY_IN_USE', shardId, file, limitBytes, `shard ${shardId}: a memory limit of ${limitBytes} bytes is below what it uses: ${why}; free memory in the workload first, or keep a larger limit`, cause === undefined ? undefined : { cause });
}

export function readFailed(shardId: string, file: string, cause: unknown): HostAgentError {
  return new HostAgentError(
    'CGROUP_READ_FAILED',
    shardId,
    file,
    undefined,
    `shard ${shardId}: reading ${file} failed (${errnoOf(cause)})`,
    { cause },
  );
}

export function parseFailed(shardId: string, file: string, text: string, expected: string): HostAgentError {
  return new HostAgentError(
    'CGROUP_PARSE_FAILED',
    shardId,
    file,
    text,
    `shard ${shardId}: ${file} holds ${showValue(text)}; expected ${expected}`,
  );
}

export function shardNotFound(shardId: string, dir: string): HostAgentError {
  return new HostAgentError(
    'SHARD_NOT_FOUND',
    shardId,
    dir,
    undefined,
    `shard ${shardId}: no cgroup at ${dir}; create the shard first`,
  );
}

export function shardBusy(shardId: string, dir: string, pids: readonly number[]): HostAgentError {
  return new HostAgentError(
    'SHARD_BUSY',
    shardId,
    dir,
    pids,
    `shard ${shardId}: ${dir} still has processes ${showValue(pids)}; kill them (killAll) before removing the shard`,
  );
}

export function freezeTimeout(shardId: string, file: string, wanted: string, seen: string, withdrawn = false): HostAgentError {
  return new HostAgentError(
    'FREEZE_TIMEOUT',
    shardId,
    file,
    seen,
    `shard ${shardId}: ${file} still reads ${showValue(seen)}, not yet ${wanted}${withdrawn ? '; the freeze request was withdrawn, so the shard runs on' : ''}; a task may be in uninterruptible sleep (retry, or kill the shard)`,
  );
}

export function unsupportedLayout(root: string, why: string): HostAgentError {
  return new HostAgentError(
    'UNSUPPORTED_CGROUP_LAYOUT',
    undefined,
    root,
    undefined,
    `${root}: ${why}; mount cgroup2 at ${root} (or the v1 cpu, cpuacct, memory, blkio and freezer controllers under it)`,
  );
}

export const shardUnknown = (shardId: string): HostAgentError =>
  new HostAgentError('SHARD_UNKNOWN', shardId, 'shardId', shardId, `shard ${showValue(shardId)} is not managed by this agent; list shards to see the known ids`);

export const shardNotRunning = (shardId: string, why: string): HostAgentError =>
  new HostAgentError('SHARD_NOT_RUNNING', shardId, 'shardId', shardId, `shard ${showValue(shardId)} has no running workload: ${why}`);

export const shardHeld = (shardId: string, action: string): HostAgentError =>
  new HostAgentError('SHARD_HELD', shardId, 'shardId', shardId, `shard ${showValue(shardId)} is held by migration; cannot ${action} it until it is adopted or discarded`);

export const shardExists = (shardId: string): HostAgentError =>
  new HostAgentError('SHARD_EXISTS', shardId, 'shardId', shardId, `shard ${showValue(shardId)} already runs on this host; discard or release it first`);

export const workloadStartFailed = (shardId: string, command: readonly string[], why: string): HostAgentError =>
  new HostAgentError('WORKLOAD_START_FAILED', shardId, 'command', command, `shard ${showValue(shardId)}: cannot start ${showValue(command)}: ${why}`);

/** spawn(2) reports a missing cwd as ENOENT of the program (/bin/sh): name the directory instead. */
export const workingDirectoryMissing = (shardId: string, command: readonly string[], dir: string): HostAgentError =>
  new HostAgentError(
    'WORKLOAD_START_FAILED',
    shardId,
    'workingDirectory',
    dir,
    `shard ${showValue(shardId)}: cannot start ${showValue(command)}: its working directory ${dir} does not exist; create it, or change workingDirectory in the plan`,
  );

export const invalidOption = (field: string, value: unknown, valid: string): HostAgentError =>
  new HostAgentError('INVALID_OPTION', undefined, field, value, `${field}: ${showValue(value)} is invalid; ${valid}`);
