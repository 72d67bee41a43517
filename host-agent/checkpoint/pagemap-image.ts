/**
 * Reads CRIU's `pagemap-<pid>.img`: which virtual pages of one process the dump wrote, and in
 * which order, into `pages-<pages id>.img` (a raw file: the page contents back to back). That
 * order is what lets the shadow pre-copy (memory-shadow.ts) compare a dump, page by page, with
 * the memory it copied while the shard was running.
 *
 * Format (CRIU images/pagemap.proto, criu/include/magic.h): two little-endian u32 magics
 * (IMG_COMMON 0x54564319, PAGEMAP 0x56084025), then entries, each a u32 length and a protobuf
 * message: first a PagemapHead { pages_id = 1 }, then PagemapEntry { vaddr = 1 (uint64),
 * nr_pages = 2, in_parent = 3 (bool, old images), flags = 4 }, flags PE_PARENT 1, PE_LAZY 2,
 * PE_PRESENT 4. An entry's pages are in the pages file when PRESENT is set and PARENT is not.
 */
import { CheckpointError } from './checkpoint-error';

export const IMG_COMMON_MAGIC = 0x54564319;
export const PAGEMAP_MAGIC = 0x56084025;
export const PE_PARENT = 1;
export const PE_LAZY = 2;
export const PE_PRESENT = 4;

export interface PagemapEntry {
  readonly vaddr: number;
  readonly pages: number;
  readonly flags: number;
}

export interface Pagemap {
  /** The `N` of `pages-N.img` that holds this process's pages. */
  readonly pagesId: number;
  readonly entries: readonly PagemapEntry[];
}

/** Whether an entry's pages are stored in the pages file (not a hole, not in a parent image). */
export function inPagesFile(entry: PagemapEntry): boolean {
  return (entry.flags & PE_PRESENT) !== 0 && (entry.flags & PE_PARENT) === 0;
}

/** Field number → varint value of one protobuf message; other wire types are skipped. */
function decodeVarintFields(message: Buffer, where: string): Map<number, bigint> {
  const fields = new Map<number, bigint>();
  let at = 0;
  const varint = (): bigint => {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (at >= message.length) throw new CheckpointError('IMAGE_MALFORMED', `${where}: truncated varint`);
      const byte = message[at++] as number;
      value |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new CheckpointError('IMAGE_MALFORMED', `${where}: varint longer than 10 bytes`);
  };
  while (at < message.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (wireType === 0) fields.set(field, varint());
    else if (wireType === 1) at += 8;
    else if (wireType === 5) at += 4;
    else if (wireType === 2) at += Number(varint());
    else throw new CheckpointError('IMAGE_MALFORMED', `${where}: unsupported protobuf wire type ${wireType} (field ${field})`);
  }
  if (at !== message.length) throw new CheckpointError('IMAGE_MALFORMED', `${where}: field runs past the end of the entry`);
  return fields;
}

/** Parses a pagemap image; IMAGE_MISMATCH naming the file and the offset when it is not one. */
export function parsePagemap(image: Buffer, file = 'pagemap image'): Pagemap {
  if (image.length < 8 || image.readUInt32LE(0) !== IMG_COMMON_MAGIC || image.readUInt32LE(4) !== PAGEMAP_MAGIC) {
    throw new CheckpointError('IMAGE_MALFORMED', `${file} is not a CRIU pagemap image (magic ${image.subarray(0, 8).toString('hex')})`);
  }
  const messages: Buffer[] = [];
  let at = 8;
  while (at < image.length) {
    if (at + 4 > image.length) throw new CheckpointError('IMAGE_MALFORMED', `${file}: truncated entry length at byte ${at}`);
    const length = image.readUInt32LE(at);
    if (at + 4 + length > image.length) throw new CheckpointError('IMAGE_MALFORMED', `${file}: entry at byte ${at} runs past the end (${length} bytes)`);
    messages.push(image.subarray(at + 4, at + 4 + length));
    at += 4 + length;
  }
  if (messages.length === 0) throw new CheckpointError('IMAGE_MALFORMED', `${file} has no pagemap head`);
  const head = decodeVarintFields(messages[0] as Buffer, `${file} head`);
  const pagesId = Number(head.get(1) ?? -1n);
  if (!Number.isSafeInteger(pagesId) || pagesId < 0) throw new CheckpointError('IMAGE_MALFORMED', `${file}: head has no pages_id`);
  const entries = messages.slice(1).map((message, index) => {
    const fields = decodeVarintFields(message, `${file} entry ${index + 1}`);
    const vaddr = fields.get(1);
    const pages = fields.get(2);
    if (vaddr === undefined || pages === undefined) throw new CheckpointError('IMAGE_MALFORMED', `${file} entry ${index + 1}: no vaddr or nr_pages`);
    // Images without flags (older CRIU) say in_parent instead.
    const flags = fields.has(4) ? Number(fields.get(4)) : fields.get(3) ? PE_PARENT : PE_PRESENT;
    if (vaddr > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointError('IMAGE_MALFORMED', `${file} entry ${index + 1}: vaddr ${vaddr} is not a user address`);
    return { vaddr: Number(vaddr), pages: Number(pages), flags };
  });
  return { pagesId, entries };
}

function varintBytes(value: number): number[] {
  const bytes: number[] = [];
  let rest = BigInt(value);
  do {
    const low = Number(rest & 0x7fn);
    rest >>= 7n;
    bytes.push(rest > 0n ? low | 0x80 : low);
  } while (rest > 0n);
  return bytes;
}

function message(fields: readonly [number, number][]): Buffer {
  const bytes: number[] = [];
  for (const [field, value] of fields) bytes.push(...varintBytes(field << 3), ...varintBytes(value));
  const body = Buffer.from(bytes);
  const length = Buffer.allocUnsafe(4);
  length.writeUInt32LE(body.length, 0);
  return Buffer.concat([length, body]);
}

/**
 * Adds `pages` pages at `vaddr` with `flags` to a pagemap being built in address order, extending
 * the last entry when they continue it with the same flags (CRIU reads either form the same).
 */
export function appendEntry(entries: PagemapEntry[], vaddr: number, pages: number, flags: number, size: number): void {
  const last = entries[entries.length - 1];
  if (last && last.flags === flags && last.vaddr + last.pages * size === vaddr) entries[entries.length - 1] = { vaddr: last.vaddr, pages: last.pages + pages, flags };
  else entries.push({ vaddr, pages, flags });
}

/** Writes a pagemap image CRIU reads back (the format parsePagemap reads). */
export function encodePagemap(pagemap: Pagemap): Buffer {
  const magics = Buffer.allocUnsafe(8);
  magics.writeUInt32LE(IMG_COMMON_MAGIC, 0);
  magics.writeUInt32LE(PAGEMAP_MAGIC, 4);
  return Buffer.concat([
    magics,
    message([[1, pagemap.pagesId]]),
    ...pagemap.entries.map((e) => message([[1, e.vaddr], [2, e.pages], [4, e.flags]])),
  ]);
}
