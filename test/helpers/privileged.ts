/**
 * The one guard for suites that need root, real cgroups, CRIU, network namespaces or etcd.
 * On a machine without them the suite is skipped with the reason printed; with
 * SHARDFORM_REQUIRE_PRIVILEGED=1 (CI) a missing prerequisite fails the suite instead.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';

/** A prerequisite probe: undefined when met, otherwise why not. */
export type Prerequisite = () => string | undefined;

export const requireRoot: Prerequisite = () =>
  process.getuid?.() === 0 ? undefined : 'needs root (run as root, e.g. in CI)';

export const requireCgroups: Prerequisite = () => {
  const root = requireRoot();
  if (root) return root;
  const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const v1 = existsSync('/sys/fs/cgroup/cpu') && existsSync('/sys/fs/cgroup/memory');
  if (!v2 && !v1) return 'needs a cgroup v1 or v2 hierarchy at /sys/fs/cgroup';
  try {
    accessSync(v2 ? '/sys/fs/cgroup' : '/sys/fs/cgroup/memory', constants.W_OK);
  } catch {
    return 'needs write access to /sys/fs/cgroup';
  }
  return undefined;
};

export const requireNetns: Prerequisite = () => {
  const root = requireRoot();
  if (root) return root;
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return "needs iproute2's `ip netns` (apt-get install iproute2)";
  }
};

export const requireCommand =
  (command: string, hint: string): Prerequisite =>
  () => {
    try {
      execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
      return undefined;
    } catch {
      return `needs ${command} (${hint})`;
    }
  };

export const privilegedRequired = process.env.SHARDFORM_REQUIRE_PRIVILEGED === '1';

/** First unmet prerequisite, if any. */
export function missingPrerequisite(needs: readonly Prerequisite[]): string | undefined {
  for (const need of needs) {
    const reason = need();
    if (reason) return reason;
  }
  return undefined;
}

/** `describe` for privileged suites: runs, skips with a printed reason, or fails under CI. */
export function describePrivileged(name: string, needs: readonly Prerequisite[], body: () => void): void {
  const reason = missingPrerequisite(needs);
  if (!reason) {
    describe(name, body);
    return;
  }
  if (privilegedRequired) {
    describe(name, () => {
      it('has its prerequisites (SHARDFORM_REQUIRE_PRIVILEGED=1)', () => {
        throw new Error(`${name}: ${reason}`);
      });
    });
    return;
  }
  // eslint-disable-next-line no-console
  console.warn(`skipping "${name}": ${reason}`);
  describe.skip(name, body);
}
