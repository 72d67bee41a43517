/**
 * The restore step's unpack of a state directory, with and without unpacking on arrival
 * (docs/migration.md, "The shard's state directory moves with it"): `npx tsx bench/state-unpack.ts
 * [MiB] [files] [runs]`. Packs a state directory of incompressible files once, then per run times
 * unpackState as the restore called it before (tar on the whole archive) and as it calls it now,
 * after the archive was fed to a StateArrival as an upload would (that arrival's time is printed
 * too: it runs while the archive is uploaded, paced by the slower of the link and tar). No root, no CRIU; a few hundred MB of disk.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packState, unpackState } from '../host-agent/migration/state-archive';
import { StateArrival } from '../host-agent/migration/state-arrival';

const mib = Number(process.argv[2] ?? 200);
const files = Number(process.argv[3] ?? 3200);
const runs = Number(process.argv[4] ?? 3);

async function main(): Promise<void> {
  const work = mkdtempSync(join(process.env.SHARDFORM_BENCH_DIR ?? tmpdir(), 'sf-state-unpack-'));
  try {
    const source = join(work, 'source');
    const perFile = Math.floor((mib * 2 ** 20) / files);
    for (let i = 0; i < files; i += 1) {
      const sub = join(source, `d${i % 32}`);
      mkdirSync(sub, { recursive: true });
      writeFileSync(join(sub, `f${i}`), randomBytes(perFile));
    }
    const archive = join(work, 'state.tar');
    await packState(source, archive);
    const sha256 = createHash('sha256');
    for await (const chunk of createReadStream(archive)) sha256.update(chunk as Buffer);
    const digest = sha256.digest('hex');
    console.log(`state directory: ${files} files, ${(statSync(archive).size / 2 ** 20).toFixed(0)} MiB archive, in ${work}`);

    const ms = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6;
    const before: number[] = [];
    const after: number[] = [];
    const arrival: number[] = [];
    for (let run = 0; run < runs; run += 1) {
      const target = join(work, 'state', 'web-0');
      let t = process.hrtime.bigint();
      await unpackState(archive, target, `before-${run}`);
      before.push(ms(t));
      rmSync(join(work, 'state'), { recursive: true, force: true });

      t = process.hrtime.bigint();
      const arriving = new StateArrival(target, `after-${run}`);
      for await (const chunk of createReadStream(archive, { highWaterMark: 1 << 20 })) await arriving.feed(chunk as Buffer);
      if (!(await arriving.finish(digest))) throw new Error(`arrival failed: ${arriving.problem}`);
      arrival.push(ms(t));
      t = process.hrtime.bigint();
      const outcome = await unpackState(archive, target, `after-${run}`, digest);
      after.push(ms(t));
      if (outcome.extracted) throw new Error('the restore ran tar although the archive arrived unpacked');
      rmSync(join(work, 'state'), { recursive: true, force: true });
    }
    const show = (xs: number[]) => `${xs.map((x) => x.toFixed(0)).join(', ')} ms (median ${[...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(0)})`;
    console.log(`restore's unpack, before (tar at the restore): ${show(before)}`);
    console.log(`restore's unpack, after (swap of what arrived unpacked): ${show(after)}`);
    console.log(`unpack on arrival (during the transfer, fed from a file): ${show(arrival)}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

void main();
