/**
 * Errors of the checkpoint side (CRIU install, dump, pre-dump, restore, image manifests).
 * Stable codes so the migration state machine and the CLI can decide on them; messages say
 * what failed, with which value, and where CRIU's own log is.
 */
export type CheckpointErrorCode =
  | 'CRIU_NOT_FOUND' // no criu >= 4 on this host (install with host-agent/checkpoint/install-criu.sh)
  | 'CRIU_FAILED' // criu exited non-zero (message names the log file)
  | 'PRECOPY_UNSUPPORTED' // the kernel cannot track dirty memory (CONFIG_MEM_SOFT_DIRTY)
  | 'NOT_PID_NAMESPACE_INIT' // the process is not the init of its own PID namespace
  | 'SESSION_OUTSIDE_NAMESPACE' // the tree's session leader is outside its PID namespace (no setsid inside)
  | 'IMAGE_MISMATCH' // an image file's size or sha256 differs from its manifest
  | 'IMAGE_MALFORMED' // a CRIU image file (pagemap) could not be read as one
  | 'MEMORY_UNREADABLE'; // a process's memory could not be read for a shadow pre-copy round

export class CheckpointError extends Error {
  constructor(
    readonly code: CheckpointErrorCode,
    message: string,
    /** CRIU's log of the failed run, when there is one. */
    readonly logFile?: string,
  ) {
    super(message);
    this.name = 'CheckpointError';
  }
}
