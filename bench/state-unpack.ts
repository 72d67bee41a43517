/**
 * npm run bench:state-unpack — the restore step's unpack of a state directory, with and without
 * unpacking on arrival (docs/migration.md, "The shard's state directory moves with it").
 * BENCH_MIB (default 200), BENCH_FILES (3200) and BENCH_REPEAT (3) size it. Packs a state directory of incompressible files once, then per run times
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

/** A whole number from the environment, or exit 2 naming the variable and the value. */
function envInteger(name: string, fallback: number, max: number): number {
  const text = process.env[name] ?? String(fallback);
  const value = Number(text);
  if (!/^[0-9]+$/.test(text.trim()) || !Number.isInteger(value) || value < 1 || value > max) {
    console.error(`bench:state-unpack: ${name}=${JSON.stringify(text)} must be an integer from 1 to ${max}`);
    process.exit(2);
  }
  return value;
}

const mib = envInteger('BENCH_MIB', 200, 8192);
const files = envInteger('BENCH_FILES', 3200, 1_000_000);
const runs = envInteger('BENCH_REPEAT', 3, 20);
const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

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
    const show = (xs: number[]) => `${xs.map((x) => x.toFixed(0)).join(', ')} ms (median ${median(xs).toFixed(0)})`;
    console.log(`restore's unpack, baseline (tar at the restore): ${show(before)}`);
    console.log(`restore's unpack, ours (swap of what arrived unpacked): ${show(after)}`);
    console.log(`baseline / ours, medians: ${(median(before) / Math.max(median(after), 0.001)).toFixed(0)}x less in the restore step`);
    console.log(`unpack on arrival (during the transfer, fed from a file; paced by the slower of the link and tar): ${show(arrival)}`);
    console.log(JSON.stringify({ bench: 'state-unpack', mib, files, restore_unpack_before_ms: before.map(Math.round), restore_unpack_after_ms: after.map((x) => Math.round(x * 10) / 10), arrival_ms: arrival.map(Math.round) }));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

void main();
