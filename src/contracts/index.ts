export * from './canonical-json';
export * from './demand-vector';
export * from './plan';
export * from './plan-checks';
export * from './plan-schema';
export * from './prediction-grid';
export * from './quantities';
export * from './schema-validator';
