/**
 * A private corner of the real cgroup hierarchies for one test run: a unique ownerPrefix
 * (`shardform-test-<pid>-<n>`) and a cleanup that kills, thaws and removes everything under it
 * in every hierarchy, even when the test failed half-way. Bounded: it gives up after a fixed
 * number of rounds and says what is left.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CgroupDriver } from '../../host-agent/cgroups';

let counter = 0;

export function uniqueOwnerPrefix(): string {
  counter += 1;
  return `shardform-test-${process.pid}-${counter}`;
}

function childDirs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => join(dir, e.name));
}

function killAndThaw(dir: string): void {
  for (const child of childDirs(dir)) killAndThaw(child);
  for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  // Frozen tasks act on SIGKILL only once thawed under the v1 freezer.
  for (const [file, value] of [['cgroup.freeze', '0'], ['freezer.state', 'THAWED']] as const) {
    if (existsSync(join(dir, file))) writeFileSync(join(dir, file), value);
  }
}

function removeTree(dir: string): void {
  for (const child of childDirs(dir)) removeTree(child);
  rmdirSync(dir);
}

/** Removes `<mount>/<ownerPrefix>` in every given mount; throws what could not be removed. */
export async function removeOwnerTree(mounts: readonly string[], ownerPrefix: string): Promise<void> {
  const left: string[] = [];
  for (const mount of new Set(mounts)) {
    const top = join(mount, ownerPrefix);
    for (let round = 0; round < 50 && existsSync(top); round++) {
      try {
        killAndThaw(top);
        removeTree(top);
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    if (existsSync(top)) left.push(top);
  }
  if (left.length > 0) throw new Error(`could not remove test cgroups: ${left.join(', ')}`);
}

/**
 * Starts `/bin/sh -c` that first writes its own pid into every cgroup.procs file of the shard
 * (so it is inside the shard before anything else runs), then runs `script` in the same pid.
 */
export function spawnInShard(driver: CgroupDriver, shardId: string, script: string): ChildProcess {
  const joins = driver.procsFiles(shardId).map((f) => `echo $$ > '${f}'`).join('; ');
  return spawn('/bin/sh', ['-c', `set -e; ${joins}; set +e; ${script}`], { stdio: 'ignore' });
}

/** Waits (bounded) until `probe` returns true; false if it never did. */
export async function eventually(probe: () => Promise<boolean> | boolean, rounds = 200, stepMs = 25): Promise<boolean> {
  for (let i = 0; i < rounds; i++) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return false;
}

/**
 * Gives the sandbox the largest CPU weight (v1 cpu.shares 262144, v2 cpu.weight 10000), so
 * that on a machine shared with other work a CPU burner is bounded by its shard's quota, which
 * is what the test measures, rather than by its share of a busy machine.
 */
export function favourCpu(mounts: readonly string[], ownerPrefix: string): void {
  for (const mount of new Set(mounts)) {
    for (const [file, value] of [['cpu.shares', '262144'], ['cpu.weight', '10000']] as const) {
      const path = join(mount, ownerPrefix, file);
      if (existsSync(path)) writeFileSync(path, value);
    }
  }
}
