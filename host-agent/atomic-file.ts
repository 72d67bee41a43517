/**
 * Replaces a file whole or not at all: write a temporary file beside it, fsync, rename(2) over
 * the old one (rename is atomic within a file system), so a crash mid-write leaves the previous
 * file, or none, never a torn one. Then the directory is fsynced: until then the rename itself
 * may not survive a power cut, and a saved shard record could come back as the one before it.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

export async function writeFileAtomically(target: string, text: string, mode = 0o600): Promise<void> {
  const temp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temp, 'w', mode);
  try {
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  } catch (error) {
    // A write that failed (disk full) and is retried must not leave a temporary file per try.
    await rm(temp, { force: true });
    throw error;
  }
  await syncDirectory(dirname(target));
}

/** fsync(2) of a directory makes the entries made or renamed in it durable. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
