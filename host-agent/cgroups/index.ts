export * from './driver';
export * from './detect';
export * from './probe';
export * from './cgroup-files';
export * from './cgroup-dialect';
export * from './shard-cgroup-driver';
export * from './limits-check';
export * from './bare-reader';
