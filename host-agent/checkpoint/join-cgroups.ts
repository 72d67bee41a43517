/** Runs a command inside given cgroups: a shim joins every cgroup.procs first, then execs it. */

/** Joins every cgroup.procs given as the first N arguments, then execs the rest (bounded loop); exit 125 when one cannot be joined. */
const JOIN_CGROUPS_THEN_EXEC =
  'n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do echo $$ > "$1" || exit 125; shift; i=$((i+1)); done; exec "$@"';

/** The exit code of the shim when it could not join a cgroup. */
export const JOIN_FAILED_EXIT = 125;

/**
 * The file and arguments that run `file args...` inside the cgroups of `procsFiles` (one
 * cgroup.procs per hierarchy); with none, the command itself. Inherited descriptors stay open
 * across the shim's exec.
 */
export function inCgroups(procsFiles: readonly string[], file: string, args: readonly string[]): [string, string[]] {
  if (procsFiles.length === 0) return [file, [...args]];
  return ['/bin/sh', ['-c', JOIN_CGROUPS_THEN_EXEC, 'shardform-join', String(procsFiles.length), ...procsFiles, file, ...args]];
}
