/**
 * Model names -> constructors and loaders, so the CLI, the agent and saved state name models the
 * same way. `auto` (per-application selection) and the cold-start prior are wrappers, not here.
 */
import { ShardformError, showValue } from '../errors';
import type { ConditionalState } from './conditional-ratio-model';
import type { DemandModel, ModelOptions, ModelState } from './demand-model';
import { HoltModel } from './holt-model';
import { RecentPeakModel } from './recent-peak-model';
import { SeasonalPeakModel } from './seasonal-peak-model';
import { VpaModel } from './vpa-model';

export const MODEL_NAMES = ['vpa', 'recent-peak', 'seasonal-peak', 'holt'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

/**
 * What a backtest can run: every model, `auto` (the selection, never less safe than vpa per
 * application) and `auto-calibrated` (calibrated at q only). Here, not in backtest-suite.ts, so
 * the CLI can list them without loading the backtest (lazy-commands.test.ts).
 */
export type SuiteModelName = ModelName | 'auto' | 'auto-calibrated';
export const SUITE_MODEL_NAMES: readonly SuiteModelName[] = [...MODEL_NAMES, 'auto-calibrated', 'auto'];

export function isModelName(name: string): name is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

export function createModel(name: ModelName, options: ModelOptions): DemandModel {
  switch (name) {
    case 'vpa':
      return new VpaModel(options);
    case 'recent-peak':
      return new RecentPeakModel(options);
    case 'seasonal-peak':
      return new SeasonalPeakModel(options);
    case 'holt':
      return new HoltModel(options);
  }
}

export function modelFromJSON(state: ModelState): DemandModel {
  switch (state.model) {
    case 'vpa':
      return VpaModel.fromJSON(state as Parameters<typeof VpaModel.fromJSON>[0]);
    case 'recent-peak':
      return RecentPeakModel.fromJSON(state as ConditionalState);
    case 'seasonal-peak':
      return SeasonalPeakModel.fromJSON(state as ConditionalState);
    case 'holt':
      return HoltModel.fromJSON(state as ConditionalState);
    default:
      throw new ShardformError('INVALID_ARGUMENT', 'model', state.model, `model: ${showValue(state.model)} is not a known model; known: ${MODEL_NAMES.join(', ')}`);
  }
}
