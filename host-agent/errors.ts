/**
 * The error catalogue of the host-agent side (after cdktf's lib/errors.ts and src/errors.ts):
 * every error has a stable `code` scripts and tests match on, the `field` it is about (a shard
 * id, a file, an option) and the offending `value`, and a message that says what would be valid.
 */
import { showValue } from '../src/errors';

export type HostAgentErrorCode =
  /** The shard is not known to this agent (no cgroup, no record). */
  | 'SHARD_NOT_FOUND'
  /** The shard's cgroup holds no workload process (no PID-namespace init) where one was expected. */
  | 'SHARD_NOT_RUNNING'
  /** The shard is held by migration (released); the keeper will not start, stop or resize it. */
  | 'SHARD_HELD'
  /** The shard already runs on this host (migration cannot prepare it as incoming). */
  | 'SHARD_EXISTS'
  /** The workload could not be started (spawn failed, or its PID-namespace init never appeared). */
  | 'WORKLOAD_START_FAILED'
  /** A runner or keeper option is out of range. */
  | 'INVALID_OPTION';

export class HostAgentError extends Error {
  constructor(
    readonly code: HostAgentErrorCode,
    /** What the error is about: a shard id, a file path or an option name. */
    readonly field: string,
    /** The offending value, as given. */
    readonly value: unknown,
    message: string,
  ) {
    super(message);
    this.name = 'HostAgentError';
  }
}

export const shardNotFound = (shardId: string): HostAgentError =>
  new HostAgentError('SHARD_NOT_FOUND', 'shardId', shardId, `shard ${showValue(shardId)} is not managed by this agent; list shards to see the known ids`);

export const shardNotRunning = (shardId: string, why: string): HostAgentError =>
  new HostAgentError('SHARD_NOT_RUNNING', 'shardId', shardId, `shard ${showValue(shardId)} has no running workload: ${why}`);

export const shardHeld = (shardId: string, action: string): HostAgentError =>
  new HostAgentError(
    'SHARD_HELD',
    'shardId',
    shardId,
    `shard ${showValue(shardId)} is held by migration; cannot ${action} it until it is adopted or discarded`,
  );

export const workloadStartFailed = (shardId: string, command: readonly string[], why: string): HostAgentError =>
  new HostAgentError('WORKLOAD_START_FAILED', 'command', command, `shard ${showValue(shardId)}: cannot start ${showValue(command)}: ${why}`);

export const invalidOption = (field: string, value: unknown, valid: string): HostAgentError =>
  new HostAgentError('INVALID_OPTION', field, value, `${field}: ${showValue(value)} is invalid; ${valid}`);

export const shardExists = (shardId: string): HostAgentError =>
  new HostAgentError('SHARD_EXISTS', 'shardId', shardId, `shard ${showValue(shardId)} already runs on this host; discard or release it first`);
