/**
 * writeSync that writes all of `data` or throws. A plain writeSync may write less than asked
 * without an error (a file system close to full, a signal): an image file written that way would
 * be short, and its pagemap would list pages that are not there.
 */
import { writeSync } from 'node:fs';

/** Writes every byte of `data` to `fd` (at `position`, else at the file's offset), or throws naming `what`. */
export function writeAllSync(fd: number, data: Uint8Array, position?: number, what = `fd ${fd}`): void {
  for (let done = 0; done < data.length; ) {
    const wrote = writeSync(fd, data, done, data.length - done, position === undefined ? null : position + done);
    if (wrote <= 0) throw new Error(`could not write ${data.length - done} more bytes to ${what}: the write wrote nothing`);
    done += wrote;
  }
}
