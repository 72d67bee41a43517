/** The destination's `prepare` request for a shard, whatever the strategy (pure). */
import type { PrepareBody } from '../api/migration-schemas';
import type { DesiredShard } from '../reconcile/desired-shard';

export function prepareRequest(source: string, desired: DesiredShard, timeoutSeconds?: number): PrepareBody {
  return {
    source,
    ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
    shard: {
      shardId: desired.shardId,
      applicationId: desired.applicationId,
      limits: {
        ...(desired.limits.cpuCores !== undefined ? { cpuCores: desired.limits.cpuCores } : {}),
        ...(desired.limits.cpuPeriodMicros !== undefined ? { cpuPeriodMicros: desired.limits.cpuPeriodMicros } : {}),
        ...(desired.limits.memoryBytes !== undefined ? { memoryBytes: desired.limits.memoryBytes } : {}),
      },
      command: [...desired.command],
      env: { ...desired.env },
      ...(desired.workingDirectory ? { workingDirectory: desired.workingDirectory } : {}),
      stateDirectory: desired.stateDirectory,
    },
  };
}
