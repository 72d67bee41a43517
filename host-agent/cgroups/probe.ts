/**
 * Probes the cgroup layout under a root once (the agent logs the result at start-up):
 *  - v2 when <root>/cgroup.controllers exists (cgroup2 mounted at the root);
 *  - hybrid when the v1 controllers are mounted under <root>/<controller> and cgroup2 at
 *    <root>/unified;
 *  - v1 when only the v1 controllers are there.
 * The root is injected, so unit tests probe a fixture tree in a temporary directory.
 */
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { unsupportedLayout } from '../errors';
import type { CgroupLayout } from './driver';
import { V1_CONTROLLERS } from './v1-dialect';

export interface CgroupProbe {
  readonly layout: CgroupLayout;
  /** Where the hierarchies were looked for, e.g. /sys/fs/cgroup. */
  readonly root: string;
  /** Mount directory per hierarchy key ('unified' or a v1 controller), symlinks resolved. */
  readonly mounts: Readonly<Record<string, string>>;
  /** v1 memory.memsw.* files present (swap accounting on); false on v2. */
  readonly memsw: boolean;
}

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';

/** A v1 hierarchy is mounted where its directory has cgroup.procs. */
function v1Mount(root: string, controller: string): string | undefined {
  const dir = join(root, controller);
  return existsSync(join(dir, 'cgroup.procs')) ? realpathSync(dir) : undefined;
}

export function probeCgroupLayout(root: string = DEFAULT_CGROUP_ROOT): CgroupProbe {
  if (existsSync(join(root, 'cgroup.controllers'))) {
    return { layout: 'v2', root, mounts: { unified: realpathSync(root) }, memsw: false };
  }
  const mounts: Record<string, string> = {};
  const missing: string[] = [];
  for (const controller of [...V1_CONTROLLERS, 'freezer']) {
    const mount = v1Mount(root, controller);
    if (mount === undefined) missing.push(controller);
    else mounts[controller] = mount;
  }
  const unified = join(root, 'unified');
  const hybrid = existsSync(join(unified, 'cgroup.controllers'));
  if (hybrid) mounts.unified = realpathSync(unified);
  // The hybrid layout freezes through the unified hierarchy and does not need the v1 freezer.
  const needed = missing.filter((c) => !(hybrid && c === 'freezer'));
  if (needed.length > 0) {
    if (Object.keys(mounts).length === 0 && !hybrid) {
      throw unsupportedLayout(root, 'neither cgroup2 (cgroup.controllers) nor v1 controller mounts found');
    }
    throw unsupportedLayout(root, `v1 controller${needed.length === 1 ? '' : 's'} ${needed.join(', ')} not mounted`);
  }
  const memsw = existsSync(join(mounts.memory as string, 'memory.memsw.limit_in_bytes'));
  return { layout: hybrid ? 'hybrid' : 'v1', root, mounts, memsw };
}
