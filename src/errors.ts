/**
 * The error catalogue of the shared side (plans, vectors, quantities, traces, CLI input).
 * Every error names the field and the bad value and says what would be valid, so the CLI can
 * print it as one readable line and map it to an exit code (after cdktf's lib/errors.ts).
 */

/** Stable codes: tests and scripts match on these, never on message text alone. */
export type ShardformErrorCode =
  | 'INVALID_QUANTITY'
  | 'INVALID_ID'
  | 'INVALID_PLAN'
  | 'INVALID_VECTOR'
  | 'INVALID_TRACE'
  | 'INVALID_ARGUMENT'
  /** A construct was given props it cannot use (constructs/, thrown at construction). */
  | 'INVALID_PROPS'
  | 'UNREADABLE_FILE'
  /** Another live agent holds this host id in the store (host-agent/host-claim.ts). */
  | 'HOST_CLAIMED'
  /** Test hosts (src/dev/netns-hosts.ts): their /24 is already used on this machine, or their tag by another live process. */
  | 'SUBNET_IN_USE'
  | 'NETNS_HOSTS_IN_USE'
  /** A command that changes the machine (network namespaces) was run without root. */
  | 'NEEDS_ROOT';

export class ShardformError extends Error {
  constructor(
    readonly code: ShardformErrorCode,
    /** Where the problem is: a JSON path (`applications[0].granularity.cpuCores`), a flag or a file. */
    readonly field: string,
    /** The offending value, as given. */
    readonly value: unknown,
    message: string,
  ) {
    super(message);
    this.name = 'ShardformError';
  }
}

/**
 * Why a string of a shard's argv, env or directories cannot hold U+0000: execve takes C strings,
 * and Node's child_process.spawn throws ERR_INVALID_ARG_VALUE before it even tries, so the shard
 * could never start (the agent would retry it forever). The plan schema and the constructs say it alike.
 */
export const NUL_RULE = 'contains a NUL byte (\\u0000), which no argv element, environment variable or path can hold (the agent could never start the process); remove it';

/** One problem found by a validator; validators return every problem, not just the first. */
export interface FieldError {
  /** JSON path of the field, e.g. `pools[1].hosts[0].address`; `(root)` for the document. */
  readonly field: string;
  readonly message: string;
  readonly value?: unknown;
}

/** Renders a value for an error message: short, JSON-like, never multi-line. */
export function showValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  // JSON would show these as null: a 1e400 in a file is read as Infinity and must be shown as such.
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  let text: string;
  try {
    text = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export function formatFieldError(error: FieldError): string {
  const shown = 'value' in error && error.value !== undefined ? ` (got ${showValue(error.value)})` : '';
  return `${error.field}: ${error.message}${shown}`;
}

/** Thrown by validators that must fail as a whole (plan loading, vector emission). */
export class ValidationFailedError extends ShardformError {
  constructor(
    code: 'INVALID_PLAN' | 'INVALID_VECTOR' | 'INVALID_TRACE',
    readonly errors: readonly FieldError[],
    what: string,
  ) {
    super(
      code,
      errors[0]?.field ?? '(root)',
      errors[0]?.value,
      `${what} is invalid (${errors.length} error${errors.length === 1 ? '' : 's'}):\n` +
        errors.map((e) => `  - ${formatFieldError(e)}`).join('\n'),
    );
  }
}

/** Ids become cgroup paths, file names and URL segments: validate before they touch any of those. */
export const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const ID_PATTERN_SOURCE = '^[a-z0-9][a-z0-9-]{0,62}$';

export function checkId(field: string, value: unknown): string {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) {
    throw new ShardformError(
      'INVALID_ID',
      field,
      value,
      `${field}: ${showValue(value)} is not a valid id; ids are 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit`,
    );
  }
  return value;
}
