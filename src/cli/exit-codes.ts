/** Exit codes of every `shardform` command (documented in the README). */
export const EXIT_OK = 0;
/** The input was read but is invalid, or the operation failed. */
export const EXIT_FAILURE = 1;
/** Usage error: unknown command or flag, bad flag value, unreadable file. */
export const EXIT_USAGE = 2;
