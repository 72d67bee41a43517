export * from './store';
export * from './metric-history';
