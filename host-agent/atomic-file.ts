/**
 * Replaces a file whole or not at all: write a temporary file beside it, fsync, rename(2) over
 * the old one (rename is atomic within a file system), so a crash mid-write leaves the previous
 * file, or none, never a torn one.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';

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
}
