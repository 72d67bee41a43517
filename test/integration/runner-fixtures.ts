/**
 * Fixtures for the runner/keeper integration suites: a private cgroup root per run (unique
 * ownerPrefix), one driver per test host id, and a cleanup that thaws, kills and removes
 * everything under that root in every hierarchy even when a test failed half-way. Bounded:
 * it gives up after a fixed number of rounds and says what is left.
 */
import { existsSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { detectCgroupDriver, type CgroupDriver } from '../../host-agent/cgroups';

export function uniqueOwnerPrefix(): string {
  return `sf-runner-test-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
}

export function driverFor(ownerPrefix: string, hostId: string): CgroupDriver {
  return detectCgroupDriver({ hostId, ownerPrefix });
}

function dirs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => join(dir, e.name));
}

function thawAndKill(dir: string): void {
  for (const child of dirs(dir)) thawAndKill(child);
  // v1 frozen tasks act on SIGKILL only once thawed (freezer-subsystem.rst).
  for (const [file, value] of [['cgroup.freeze', '0'], ['freezer.state', 'THAWED']] as const) {
    if (existsSync(join(dir, file))) writeFileSync(join(dir, file), value);
  }
  for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function removeTree(dir: string): void {
  for (const child of dirs(dir)) removeTree(child);
  rmdirSync(dir);
}

/** Removes `<mount>/<ownerPrefix>` in every hierarchy `driver` uses; throws naming what is left. */
export async function removeOwnerTree(driver: CgroupDriver, ownerPrefix: string): Promise<void> {
  // paths() of any id gives <mount>/<ownerPrefix>/<hostId>/<id>: three levels up is the mount.
  const mounts = new Set(Object.values(driver.paths('probe')).map((p) => dirname(dirname(dirname(p)))));
  const left: string[] = [];
  for (const mount of mounts) {
    const top = join(mount, ownerPrefix);
    for (let round = 0; round < 50 && existsSync(top); round += 1) {
      try {
        thawAndKill(top);
        removeTree(top);
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    if (existsSync(top)) left.push(top);
  }
  if (left.length > 0) throw new Error(`could not remove test cgroups: ${left.join(', ')}`);
}

/** The cgroup paths of a process, one line per hierarchy (proc(5) /proc/<pid>/cgroup). */
export function cgroupsOf(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
}

export function nsPids(pid: number): number[] {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('NSpid:'));
  return (line ?? '').slice('NSpid:'.length).trim().split(/\s+/).map(Number);
}

export function isAlive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    return state !== undefined && state !== 'Z';
  } catch {
    return false;
  }
}
