/** Exit codes of every `shardform` command (documented in the README). */
export const EXIT_OK = 0;
/** The input was read but is invalid, or the operation failed. */
export const EXIT_FAILURE = 1;
/** Usage error: unknown command or flag, bad flag value, unreadable file. */
export const EXIT_USAGE = 2;
/**
 * The reader of our output went away (`shardform predict ... | head -1`): the status a shell
 * reports for a Unix tool killed by SIGPIPE (128 + 13). Node ignores SIGPIPE and reports EPIPE
 * instead, so bin.js ends the process with this status, quietly.
 */
export const EXIT_BROKEN_PIPE = 141;
