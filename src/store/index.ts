export * from './store';
export * from './metric-history';
export * from './store-error';
export * from './keys';
export * from './clock';
export * from './embedded-store';
export * from './etcd-store';
export * from './open-store';
