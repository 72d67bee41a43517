import { assertDemandVector, checkDemandVector } from '../../src/contracts/demand-vector';

/** The example of ../shared/DESIGN.md and SEED.md, verbatim. */
const DESIGN_EXAMPLE = `{ "timestamp": "2024-10-27T10:00:00Z", "application_id": "app123",
  "resources": { "cpu": { "cores": 8, "percentage": 90 },
                 "memory": { "gb": 16, "percentage": 80 },
                 "io": { "read_ops": 1000, "write_ops": 500 } } }`;

const valid = () => JSON.parse(DESIGN_EXAMPLE);

describe('demand vector schema', () => {
  it('accepts the DESIGN.md example unchanged', () => {
    const result = checkDemandVector(JSON.parse(DESIGN_EXAMPLE));
    expect(result).toEqual({ ok: true, value: JSON.parse(DESIGN_EXAMPLE) });
  });

  it('accepts the optional extensions', () => {
    const vector = {
      ...valid(),
      horizon_seconds: 900,
      quantile: 0.95,
      model: 'seasonal',
      confidence: 0.7,
      shard_id: 'app123-0',
      resources: { ...valid().resources, network: { rx_bytes_per_second: 1e6, tx_bytes_per_second: 2e5 } },
    };
    expect(checkDemandVector(vector).ok).toBe(true);
  });

  const malformed: [string, (v: any) => void, string, string][] = [
    ['a timestamp that is not RFC 3339', (v) => (v.timestamp = '27/10/2024'), 'timestamp', 'must match format "date-time"'],
    ['a missing timestamp', (v) => delete v.timestamp, 'timestamp', 'is required'],
    ['an application id with capitals', (v) => (v.application_id = 'App123'), 'application_id', 'must match pattern'],
    ['an application id that is a path', (v) => (v.application_id = '../etc'), 'application_id', 'must match pattern'],
    ['negative cores', (v) => (v.resources.cpu.cores = -1), 'resources.cpu.cores', 'must be >= 0'],
    ['cores as a string', (v) => (v.resources.cpu.cores = '8'), 'resources.cpu.cores', 'must be number'],
    ['a missing memory block', (v) => delete v.resources.memory, 'resources.memory', 'is required'],
    ['memory in the wrong unit field', (v) => (v.resources.memory = { bytes: 1 }), 'resources.memory.gb', 'is required'],
    ['a negative percentage', (v) => (v.resources.memory.percentage = -5), 'resources.memory.percentage', 'must be >= 0'],
    ['io without write_ops', (v) => delete v.resources.io.write_ops, 'resources.io.write_ops', 'is required'],
    ['an unknown resource', (v) => (v.resources.gpu = { count: 1 }), 'resources.gpu', 'is not a known field'],
    ['an unknown top-level field', (v) => (v.priority = 'high'), 'priority', 'is not a known field'],
    ['a quantile of 1', (v) => (v.quantile = 1), 'quantile', 'must be < 1'],
    ['a zero horizon', (v) => (v.horizon_seconds = 0), 'horizon_seconds', 'must be > 0'],
    ['a confidence above 1', (v) => (v.confidence = 1.5), 'confidence', 'must be <= 1'],
  ];

  it.each(malformed)('rejects %s, naming the field', (_name, edit, field, message) => {
    const vector = valid();
    edit(vector);
    const result = checkDemandVector(vector);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toEqual(expect.arrayContaining([expect.objectContaining({ field, message: expect.stringContaining(message) })]));
  });

  it('reports every error of a vector at once, with the bad values', () => {
    const result = checkDemandVector({ timestamp: 'soon', application_id: 'x', resources: { cpu: { cores: -2 }, memory: { gb: 'lots' } } });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.map((e) => [e.field, e.value])).toEqual([
      ['timestamp', 'soon'],
      ['resources.cpu.cores', -2],
      ['resources.memory.gb', 'lots'],
    ]);
  });

  it('throws a ShardformError listing every error from assertDemandVector', () => {
    expect(() => assertDemandVector({ ...valid(), resources: {} })).toThrow(
      'demand vector is invalid (2 errors):\n  - resources.cpu: is required\n  - resources.memory: is required',
    );
  });
});
