/**
 * The resource demand vector: a prediction of one application's (or shard's) need at a future
 * time. The seed's example validates unchanged; extensions are optional fields.
 * Absolute fields (`cores`, `gb`, `*_ops`) are the predicted need at `timestamp`; `percentage`
 * is that need relative to the current allocation (it may exceed 100: that is the signal).
 */
import { Type, type Static } from '@sinclair/typebox';
import { ID_PATTERN_SOURCE, ValidationFailedError } from '../errors';
import { compileSchema } from './schema-validator';

const NonNegative = (description: string) => Type.Number({ minimum: 0, description });

export const DemandVectorSchema = Type.Object(
  {
    timestamp: Type.String({ format: 'date-time', description: 'The future time the prediction is for (RFC 3339).' }),
    application_id: Type.String({ pattern: ID_PATTERN_SOURCE }),
    resources: Type.Object(
      {
        cpu: Type.Object(
          { cores: NonNegative('Predicted CPU need in cores.'), percentage: Type.Optional(NonNegative('Need as % of allocation.')) },
          { additionalProperties: false },
        ),
        memory: Type.Object(
          { gb: NonNegative('Predicted memory need in GB (10^9 bytes).'), percentage: Type.Optional(NonNegative('Need as % of allocation.')) },
          { additionalProperties: false },
        ),
        io: Type.Optional(
          Type.Object(
            {
              read_ops: NonNegative('Predicted read operations per second.'),
              write_ops: NonNegative('Predicted write operations per second.'),
              percentage: Type.Optional(NonNegative('Need as % of the IOPS allocation.')),
            },
            { additionalProperties: false },
          ),
        ),
        network: Type.Optional(
          Type.Object(
            {
              rx_bytes_per_second: NonNegative('Predicted receive throughput.'),
              tx_bytes_per_second: NonNegative('Predicted transmit throughput.'),
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false },
    ),
    horizon_seconds: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'How far ahead of the issue time `timestamp` is.' })),
    quantile: Type.Optional(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1, description: 'The quantile of the peak demand over the horizon.' })),
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Which model produced the vector, e.g. `vpa`, `cold-start-prior`.' })),
    confidence: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'How much history backs the prediction (0 = prior only).' })),
    shard_id: Type.Optional(Type.String({ pattern: ID_PATTERN_SOURCE })),
  },
  { additionalProperties: false, $id: 'https://shardform.dev/schemas/demand-vector.json' },
);

export type DemandVector = Static<typeof DemandVectorSchema>;

export const checkDemandVector = compileSchema(DemandVectorSchema);

/** Validates a vector (e.g. before it leaves the predictor) and throws with every error listed. */
export function assertDemandVector(data: unknown, what = 'demand vector'): DemandVector {
  const result = checkDemandVector(data);
  if (!result.ok) throw new ValidationFailedError('INVALID_VECTOR', result.errors, what);
  return result.value;
}
