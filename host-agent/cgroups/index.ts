export * from './driver';
export * from './detect';
