/**
 * The files of one CRIU image directory with their sizes and sha256, so an image can be
 * streamed file by file and verified on arrival. Hashing streams each file: an image of a
 * 256 MiB shard is never held in memory.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointError } from './checkpoint-error';

export interface ImageFile {
  /** File name inside the image directory (CRIU writes a flat directory). */
  readonly name: string;
  readonly bytes: number;
  /** Lowercase hex. */
  readonly sha256: string;
}

export interface ImageManifest {
  readonly files: readonly ImageFile[];
  readonly totalBytes: number;
}

/** CRIU's memory image of one process (or shared memory object): `pages-1.img`, `pages-12.img`. */
export const PAGES_FILE = /^pages-\d+\.img$/;

/** CRIU image file names: `pages-1.img`, `core-12.img`, `stats-dump`, `irmap-cache`. */
export const IMAGE_FILE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Files that are not part of the image: our CRIU logs, files being written (`.partial`). `parent` is the pre-dump link. */
export function isImageFile(name: string): boolean {
  return IMAGE_FILE_PATTERN.test(name) && !name.endsWith('.log') && !name.endsWith('.partial') && name !== 'parent';
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Lists and hashes every image file of `dir`, in name order. */
export async function buildManifest(dir: string): Promise<ImageManifest> {
  const names = (await readdir(dir)).filter(isImageFile).sort();
  const files: ImageFile[] = [];
  for (const name of names) {
    const info = await lstat(join(dir, name));
    if (!info.isFile()) continue;
    files.push({ name, bytes: info.size, sha256: await sha256OfFile(join(dir, name)) });
  }
  return { files, totalBytes: files.reduce((sum, f) => sum + f.bytes, 0) };
}

/** The image files of `dir` with their sizes, in name order, without hashing them. */
export async function listImageFiles(dir: string): Promise<{ name: string; bytes: number }[]> {
  const files: { name: string; bytes: number }[] = [];
  for (const name of (await readdir(dir)).filter(isImageFile).sort()) {
    const info = await lstat(join(dir, name));
    if (info.isFile()) files.push({ name, bytes: info.size });
  }
  return files;
}

/** Total bytes of the image files of `dir`, without hashing them. */
export async function imageBytes(dir: string): Promise<number> {
  return (await listImageFiles(dir)).reduce((sum, f) => sum + f.bytes, 0);
}

/** Throws IMAGE_MISMATCH naming the first file that is missing, of another size or hash. */
export async function verifyManifest(dir: string, manifest: ImageManifest): Promise<void> {
  for (const file of manifest.files) {
    const path = join(dir, file.name);
    const info = await lstat(path).catch(() => undefined);
    if (!info?.isFile()) throw new CheckpointError('IMAGE_MISMATCH', `image file ${file.name} is missing from ${dir}`);
    if (info.size !== file.bytes) {
      throw new CheckpointError('IMAGE_MISMATCH', `image file ${file.name} has ${info.size} bytes, manifest says ${file.bytes}`);
    }
    const sha256 = await sha256OfFile(path);
    if (sha256 !== file.sha256) {
      throw new CheckpointError('IMAGE_MISMATCH', `image file ${file.name} has sha256 ${sha256}, manifest says ${file.sha256}`);
    }
  }
}
