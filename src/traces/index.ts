export * from './bitbrains-reader';
export * from './generic-csv-reader';
export * from './metric-history-adapter';
export * from './resample';
export * from './trace-error';
export * from './trace-loader';
