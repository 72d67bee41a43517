import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isImageFile, listImageFiles } from '../../../host-agent/checkpoint/image-manifest';
import { tempDir } from '../../helpers/cli';

describe('image files of a CRIU image directory', () => {
  const dir = tempDir('shardform-image-files');
  afterAll(() => dir.remove());

  it('are the image files only: not our CRIU logs, not files still being written, not the parent link', () => {
    expect(['pages-1.img', 'core-1.img', 'stats-dump', 'irmap-cache', 'state.tar'].every(isImageFile)).toBe(true);
    expect(['criu-dump.log', 'pages-1.img.partial', 'parent', '../x', '.hidden'].some(isImageFile)).toBe(false);
  });

  it('lists them in name order with their sizes, skipping what is not one', async () => {
    const images = join(dir.path, 'round');
    mkdirSync(images);
    writeFileSync(join(images, 'pages-1.img'), Buffer.alloc(8192));
    writeFileSync(join(images, 'core-1.img'), 'core');
    writeFileSync(join(images, 'pages-1.img.partial'), 'half');
    writeFileSync(join(images, 'criu-dump.log'), 'log');
    symlinkSync('..', join(images, 'parent'));
    expect(await listImageFiles(images)).toEqual([
      { name: 'core-1.img', bytes: 4 },
      { name: 'pages-1.img', bytes: 8192 },
    ]);
  });
});
