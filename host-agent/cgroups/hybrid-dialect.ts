/**
 * Hybrid layout (systemd's "hybrid" mode, our CI and development machines): the v1
 * controllers own cpu, memory and blkio, and a cgroup2 hierarchy without controllers is
 * mounted at <root>/unified. The shard gets a directory there too, because cgroup2 core
 * files work without any controller: cgroup.freeze, cgroup.kill, cgroup.events and the
 * per-cgroup PSI files (cgroup-v2.rst "Core Interface Files"; PSI accounts tasks by their
 * cgroup2 membership, Documentation/accounting/psi.rst "Cgroup2 interface").
 */
import type { CgroupDialect } from './cgroup-dialect';
import { unifiedFreezer } from './freezers';
import { V1_CONTROLLERS, v1Hierarchies, v1LimitsAndUsage, type V1Features } from './v1-dialect';

export function hybridDialect(mounts: Readonly<Record<string, string>>, features: V1Features): CgroupDialect {
  const unified = mounts.unified;
  if (unified === undefined) throw new Error('hybrid layout without a unified mount');
  return {
    layout: 'hybrid',
    // No delegates: the controllers are bound to v1 and cannot be enabled in the unified tree.
    hierarchies: [...v1Hierarchies(mounts, V1_CONTROLLERS), { key: 'unified', mount: unified, delegates: [] }],
    // Freeze and kill act on the unified membership, so pids and listing come from there too.
    primary: 'unified',
    ...v1LimitsAndUsage(features),
    freezer: unifiedFreezer('unified'),
    pressureHierarchy: 'unified',
    killHierarchy: 'unified',
  };
}
