/**
 * A plan in a local file. fs.watch on the directory (editors and `mv` replace the file, which a
 * watch on the file itself would miss) gives quick hints; the periodic check in PlanSource is
 * the fallback where inotify is unavailable or drops events. Changes are told by content, not
 * by stat: a rename-over can reuse the inode and land in the same millisecond with the same size.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { FetchOutcome, PlanFetcher } from './plan-fetcher';

export class FilePlanFetcher implements PlanFetcher {
  readonly source: string;
  private seenText: string | undefined;

  constructor(path: string) {
    this.source = resolve(path);
  }

  async fetch(): Promise<FetchOutcome> {
    try {
      const text = await readFile(this.source, 'utf8');
      if (text === this.seenText) return { kind: 'unchanged' };
      this.seenText = text;
      return { kind: 'content', text };
    } catch (error) {
      this.seenText = undefined;
      return { kind: 'failed', message: (error as NodeJS.ErrnoException).code ?? (error as Error).message };
    }
  }

  watch(onHint: () => void): () => void {
    let watcher: FSWatcher | undefined;
    const name = basename(this.source);
    try {
      watcher = watch(dirname(this.source), { persistent: false }, (_event, file) => {
        if (file === null || file === name) onHint();
      });
      watcher.on('error', () => watcher?.close());
    } catch {
      // No inotify (or the directory is missing): the periodic check still sees changes.
    }
    return () => watcher?.close();
  }

  forget(): void {
    this.seenText = undefined;
  }
}
