/**
 * What every model is: a small pure object fed one sample at a time (with the sample's own
 * timestamp — a model never reads the clock), answering "the peak of this resource over the next
 * `horizonSeconds`, at quantile q", and saving/loading its whole state as JSON so it survives an
 * agent restart (after the VPA recommender's histogram checkpoints). Work per sample is constant.
 */
import { ShardformError, showValue } from '../errors';
import type { ResourceName } from './series';

export interface ResourceSample {
  /** Unix time of the sample, seconds. */
  readonly atSeconds: number;
  /** The measured value in the resource's unit (cores, bytes, ops/s); NaN = missing. */
  readonly value: number;
}

/** Settings every model is built with (from the plan's predictor settings). */
export interface ModelOptions {
  readonly resource: ResourceName;
  /** The sampling grid. Default 300 s. */
  readonly intervalSeconds: number;
  /** The horizon whose peak is predicted. Default 900 s. */
  readonly horizonSeconds: number;
}

/**
 * Refuses a saved model state that could not have been saved by this code (a corrupt row, a
 * hostile body): loading checks what would otherwise crash or run away (indices, sizes, times).
 */
export function checkState(ok: boolean, field: string, value: unknown, expected: string): void {
  if (!ok) throw new ShardformError('INVALID_ARGUMENT', `state.${field}`, value, `state.${field}: ${showValue(value)} is not ${expected}`);
}

export interface ModelState {
  readonly model: string;
  readonly options: ModelOptions;
  readonly [key: string]: unknown;
}

export interface DemandModel {
  /** Stable name, used in vectors (`model`), CLI flags and saved state. */
  readonly name: string;
  readonly options: ModelOptions;
  update(sample: ResourceSample): void;
  /** The q-quantile of the peak over (t, t + horizon], t = the last sample seen; NaN if the model cannot tell yet. */
  predict(horizonSeconds: number, quantile: number): number;
  /** Seconds of history the model has learnt from (from first to last present sample). */
  historySeconds(): number;
  toJSON(): ModelState;
}

export const DEFAULT_INTERVAL_SECONDS = 300;
export const DEFAULT_HORIZON_SECONDS = 900;
export const DEFAULT_QUANTILE = 0.95;

/** Number of grid steps in the horizon (at least one). */
export function horizonSteps(options: ModelOptions): number {
  return Math.max(1, Math.round(options.horizonSeconds / options.intervalSeconds));
}
