/**
 * Opens the store a plan names (`plan.store`): the embedded file or an etcd cluster. The
 * plan's schema has already validated the shape; this checks what only opening can tell
 * (a relative path needs a base directory) and names the setting when it fails.
 */
import { isAbsolute, resolve } from 'node:path';
import type { StoreSettings } from '../contracts/plan-schema';
import type { Clock } from './clock';
import { EmbeddedStore } from './embedded-store';
import { EtcdStore } from './etcd-store';
import type { Store } from './store';
import { storeError } from './store-error';

export interface OpenStoreOptions {
  /** Where a relative embedded path is resolved: the agent's state directory. */
  readonly baseDirectory?: string;
  /** For tests: the clock of an embedded store's leases. */
  readonly clock?: Clock;
}

export function openStore(settings: StoreSettings, options: OpenStoreOptions = {}): Store {
  switch (settings.kind) {
    case 'embedded': {
      if (typeof settings.path !== 'string' || settings.path.length === 0) {
        throw storeError('INVALID_SETTINGS', 'store.path', settings.path, 'no file for the embedded store', 'give a file path, e.g. /var/lib/shardform/store.db');
      }
      if (!isAbsolute(settings.path) && !options.baseDirectory) {
        throw storeError('INVALID_SETTINGS', 'store.path', settings.path, 'a relative path needs a base directory', 'use an absolute path or pass the state directory');
      }
      const path = isAbsolute(settings.path) ? settings.path : resolve(options.baseDirectory ?? '', settings.path);
      try {
        return new EmbeddedStore({ path, clock: options.clock });
      } catch (error) {
        throw storeError('INVALID_SETTINGS', 'store.path', settings.path, `cannot open the store file: ${(error as Error).message}`, 'check the directory exists and is writable');
      }
    }
    case 'etcd':
      return new EtcdStore({ endpoints: settings.endpoints, prefix: settings.prefix });
    default:
      throw storeError('INVALID_SETTINGS', 'store.kind', (settings as { kind: unknown }).kind, 'unknown store kind', "use 'embedded' or 'etcd'");
  }
}
