export * from './initial-placement';
