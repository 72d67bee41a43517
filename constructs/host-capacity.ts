/**
 * What one host offers to shards, as users write it (`{ cpu: 2, memory: '8GiB' }`), and the one
 * place it is parsed into the plan's units.
 */
import type { Capacity } from '../src/contracts/plan-schema';
import type { Quantity } from '../src/contracts/quantities';
import type { PropChecker } from './prop-checks';

export interface HostCapacity {
  /** CPU cores offered to shards: `2`, `"1.5"`, `"1500m"`. */
  readonly cpu: Quantity;
  /** Memory offered to shards: `"8GiB"`, `"512Mi"`, or bytes. */
  readonly memory: Quantity;
  /**
   * Read operations per second offered to shards.
   * @default 0 (not limited: shards get no io.max read limit from this host)
   */
  readonly readIops?: number;
  /**
   * Write operations per second offered to shards.
   * @default 0 (not limited)
   */
  readonly writeIops?: number;
}

/** Parses a capacity, recording every bad field on `checker`; undefined when any field is bad. */
export function parseCapacity(checker: PropChecker, property: string, capacity: HostCapacity | undefined): Capacity | undefined {
  if (capacity === undefined || capacity === null || typeof capacity !== 'object') {
    checker.fail(property, capacity, 'is not a capacity; use { cpu: 2, memory: "8GiB" }');
    return undefined;
  }
  const cpuCores = checker.cpu(`${property}.cpu`, capacity.cpu);
  const memoryBytes = checker.bytes(`${property}.memory`, capacity.memory);
  const readIops = checker.integer(`${property}.readIops`, capacity.readIops ?? 0, 0);
  const writeIops = checker.integer(`${property}.writeIops`, capacity.writeIops ?? 0, 0);
  if (cpuCores === undefined || memoryBytes === undefined || readIops === undefined || writeIops === undefined) return undefined;
  return { cpuCores, memoryBytes, readIops, writeIops };
}
