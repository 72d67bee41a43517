import fs, { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeAllSync } from '../../../host-agent/checkpoint/write-all';
import { tempDir } from '../../helpers/cli';

describe('writing all of a buffer', () => {
  const dir = tempDir('shardform-write-all');
  afterAll(() => dir.remove());
  afterEach(() => jest.restoreAllMocks());

  it('goes on after a short write until every byte is written, at the position asked', () => {
    const path = join(dir.path, 'pages-1.img');
    fs.writeFileSync(path, Buffer.alloc(16, 0));
    const fd = openSync(path, 'r+');
    const real = fs.writeSync;
    // The kernel may write less than asked without an error: here 3 bytes at a time.
    const short = jest.spyOn(fs, 'writeSync').mockImplementation(((f: number, data: Uint8Array, offset: number, length: number, position: number | null) =>
      real(f, data, offset, Math.min(length, 3), position)) as typeof fs.writeSync);
    try {
      writeAllSync(fd, Buffer.from('abcdefghij'), 4, path);
    } finally {
      closeSync(fd);
    }
    expect(short.mock.calls.length).toBe(4);
    expect(readFileSync(path)).toEqual(Buffer.concat([Buffer.alloc(4, 0), Buffer.from('abcdefghij'), Buffer.alloc(2, 0)]));
  });

  it('throws, naming the file, when a write writes nothing', () => {
    jest.spyOn(fs, 'writeSync').mockReturnValue(0);
    expect(() => writeAllSync(99, Buffer.from('abc'), undefined, '/images/pages-2.img')).toThrow('could not write 3 more bytes to /images/pages-2.img');
  });
});
