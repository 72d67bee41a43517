/**
 * Eager prop validation for constructors, after aws-cdk's validate-queue-props: every rule is
 * checked, every failure is collected, and the constructor throws once with all of them, each
 * line naming the construct path, the property, the bad value and what would be valid.
 * Whole-tree questions (does the shard fit the pool?) are not asked here but in
 * `node.addValidation`, because only the finished tree can answer them.
 */
import { Token } from 'cdktf';
import type { IConstruct } from 'constructs';
import { ID_PATTERN, ShardformError, showValue } from '../src/errors';
import { horizonProblem, intervalProblem } from '../src/contracts/prediction-grid';
import { parseBytes, parseCpuCores, parseDurationSeconds, type Quantity } from '../src/contracts/quantities';

export class InvalidPropsError extends ShardformError {
  constructor(
    /** The construct path, e.g. `local-fleet/web`. */
    readonly path: string,
    /** One readable line per failure, each starting with `<path>/<property>:`. */
    readonly problems: readonly string[],
    firstProperty: string,
    firstValue: unknown,
  ) {
    super('INVALID_PROPS', `${path}/${firstProperty}`, firstValue, problems.join('\n'));
    this.name = 'InvalidPropsError';
  }
}

export const TOKEN_RULE = 'is an unresolved cdktf token (a TerraformVariable, a resource attribute, Fn.*); agents read the plan as written, so give a literal value known at synth';

/**
 * Where `value` holds unresolved cdktf tokens: `[path, token]` pairs, walking strings, numbers,
 * lists and plain objects (keys too), never into constructs or value classes. The plan is written
 * by us, not resolved by Terraform, so a token would reach agents as the text `${TfToken[TOKEN.1]}`
 * (a string) or as -8.1e+298 (a number).
 */
export function unresolvedTokens(value: unknown, path: string): [string, unknown][] {
  if (Array.isArray(value)) return value.flatMap((item, index) => unresolvedTokens(item, `${path}[${index}]`));
  if (value !== null && typeof value === 'object') {
    const prototype = Object.getPrototypeOf(value);
    if (prototype !== Object.prototype && prototype !== null) return Token.isUnresolved(value) ? [[path, value]] : [];
    return Object.entries(value).flatMap(([key, item]) => [
      ...(Token.isUnresolved(key) ? ([[`${path}.${key}`, key]] as [string, unknown][]) : []),
      ...unresolvedTokens(item, `${path}.${key}`),
    ]);
  }
  return (typeof value === 'string' || typeof value === 'number') && Token.isUnresolved(value) ? [[path, value]] : [];
}

const ID_RULE = "ids are 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit";
const LABEL_KEY = /^[a-z0-9A-Z._/-]{1,63}$/;

/** Collects failures for one construct; `throwIfAny()` ends the constructor's checks. */
export class PropChecker {
  private readonly problems: string[] = [];
  private first: { property: string; value: unknown } | undefined;

  /**
   * @param construct the construct being built, when these are its constructor's checks:
   *   `throwIfAny()` then takes it out of the tree, so a caught error leaves nothing half-built
   *   for the synth to compile.
   */
  constructor(private readonly path: string, private readonly construct?: IConstruct) {}

  /** The checks of `construct`'s constructor (a failure detaches it from its scope). */
  static for(construct: IConstruct): PropChecker {
    return new PropChecker(construct.node.path, construct);
  }

  /** Records a failure: `<path>/<property>: <value> <reason>`. */
  fail(property: string, value: unknown, reason: string): void {
    this.first ??= { property, value };
    this.problems.push(`${this.path}/${property}: ${showValue(value)} ${reason}`);
  }

  /** Records `reason` unless `ok`. Returns `ok` so callers can skip dependent checks. */
  require(ok: boolean, property: string, value: unknown, reason: string): boolean {
    if (!ok) this.fail(property, value, reason);
    return ok;
  }

  /** Runs a parser from quantities.ts; its error (already `<property>: <value> is not ...`) becomes a line. */
  parse<T>(property: string, value: unknown, parser: () => T): T | undefined {
    try {
      return parser();
    } catch (error) {
      if (!(error instanceof ShardformError)) throw error;
      this.first ??= { property, value };
      this.problems.push(`${this.path}/${error.message}`);
      return undefined;
    }
  }

  /**
   * Refuses unresolved cdktf tokens anywhere in `props` (each key its own property, prefixed with
   * `prefix`), except the keys in `terraformOnly`, which go to Terraform resources and never into
   * the plan. Returns false when there were any, so a constructor can throw before the other
   * checks report the same values again as a huge negative number or a bad quantity.
   */
  literals(props: object | undefined, prefix = '', terraformOnly: readonly string[] = []): boolean {
    let ok = true;
    for (const [key, value] of Object.entries(props ?? {})) {
      if (terraformOnly.includes(key)) continue;
      for (const [path, token] of unresolvedTokens(value, `${prefix}${key}`)) {
        ok = false;
        // A number token shows as its string form, which says "token" where -8.1e+298 would not.
        this.fail(path, typeof token === 'number' ? Token.asString(token) : token, TOKEN_RULE);
      }
    }
    return ok;
  }

  cpu(property: string, value: Quantity, positive = true): number | undefined {
    const cores = this.parse(property, value, () => parseCpuCores(value, property));
    if (cores !== undefined && positive && !this.require(cores > 0, property, value, 'must be more than 0 cores (e.g. "500m" or 1)')) return undefined;
    return cores;
  }

  bytes(property: string, value: Quantity, positive = true): number | undefined {
    const bytes = this.parse(property, value, () => parseBytes(value, property));
    if (bytes !== undefined && positive && !this.require(bytes > 0, property, value, 'must be more than 0 bytes (e.g. "512MiB")')) return undefined;
    return bytes;
  }

  duration(property: string, value: Quantity, minimumSeconds = 0): number | undefined {
    const seconds = this.parse(property, value, () => parseDurationSeconds(value, property));
    if (seconds !== undefined && !this.require(seconds >= minimumSeconds, property, value, `must be at least ${minimumSeconds}s`)) return undefined;
    return seconds;
  }

  /** A prediction grid: the plan's and `--interval`'s bounds (prediction-grid.ts). */
  interval(property: string, value: Quantity): number | undefined {
    const seconds = this.parse(property, value, () => parseDurationSeconds(value, property));
    const problem = seconds === undefined ? undefined : intervalProblem(seconds);
    return this.require(problem === undefined, property, value, `is not ${problem}`) ? seconds : undefined;
  }

  /** A horizon on a grid of `intervalSeconds` (named `intervalName`): whole steps, not too many (prediction-grid.ts). */
  horizon(property: string, value: Quantity, intervalSeconds: number | undefined, intervalName: string): number | undefined {
    const seconds = this.duration(property, value, 1);
    if (seconds === undefined || intervalSeconds === undefined) return seconds;
    const problem = horizonProblem(seconds, intervalSeconds, intervalName);
    return this.require(problem === undefined, property, value, `is not ${problem}`) ? seconds : undefined;
  }

  /** A whole number in [minimum, maximum]. */
  integer(property: string, value: number, minimum: number, maximum = Number.MAX_SAFE_INTEGER): number | undefined {
    const range = maximum === Number.MAX_SAFE_INTEGER ? `${minimum} or more` : `from ${minimum} to ${maximum}`;
    return this.require(Number.isInteger(value) && value >= minimum && value <= maximum, property, value, `is not valid; use a whole number ${range}`)
      ? value
      : undefined;
  }

  /** A finite number in [minimum, maximum], or (minimum, maximum] when `exclusiveMinimum`. */
  number(property: string, value: number, minimum: number, maximum: number, exclusiveMinimum = false): number | undefined {
    const ok = Number.isFinite(value) && (exclusiveMinimum ? value > minimum : value >= minimum) && value <= maximum;
    const range = `${exclusiveMinimum ? '(' : '['}${minimum}, ${maximum}]`;
    return this.require(ok, property, value, `is outside ${range}; use a number in ${range}`) ? value : undefined;
  }

  /** A finite number of 0 or more. */
  nonNegative(property: string, value: number): number | undefined {
    return this.require(typeof value === 'number' && Number.isFinite(value) && value >= 0, property, value, 'is not valid; use a number of 0 or more') ? value : undefined;
  }

  id(property: string, value: string): string | undefined {
    return this.require(typeof value === 'string' && ID_PATTERN.test(value), property, value, `is not a valid id; ${ID_RULE}`) ? value : undefined;
  }

  absolutePath(property: string, value: string): string | undefined {
    return this.require(typeof value === 'string' && value.startsWith('/'), property, value, 'is not an absolute path; use a path starting with /') ? value : undefined;
  }

  labels(property: string, labels: Readonly<Record<string, string>>): Record<string, string> {
    for (const [key, value] of Object.entries(labels)) {
      this.require(LABEL_KEY.test(key), `${property}.${key}`, key, 'is not a valid label key; use 1-63 characters of A-Z, a-z, 0-9 and . _ / -');
      this.require(typeof value === 'string' && value.length <= 253, `${property}.${key}`, value, 'is not a valid label value; use a string of at most 253 characters');
    }
    return { ...labels };
  }

  get ok(): boolean {
    return this.problems.length === 0;
  }

  throwIfAny(): void {
    if (!this.first) return;
    // The construct joined its scope in super(); a caller that catches the error must not find
    // it there at synth with its fields unset (a crash) or partly filled (a pool with some hosts).
    if (this.construct) this.construct.node.scope?.node.tryRemoveChild(this.construct.node.id);
    throw new InvalidPropsError(this.path, this.problems, this.first.property, this.first.value);
  }
}

/** The message a validation returns: `<construct id>/<property>: <problem>` (cdktf prefixes the full path). */
export function problemAt(construct: IConstruct, property: string, problem: string): string {
  return `${construct.node.id}/${property}: ${problem}`;
}
