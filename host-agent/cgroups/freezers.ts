/**
 * The two freezers: cgroup v2's cgroup.freeze (also on a hybrid host's unified hierarchy) and
 * the v1 freezer controller. Both are asynchronous in the kernel: the request returns before
 * every task has stopped, so the driver waits for the settled state.
 */
import { parseNamed, type ShardFileReader } from './cgroup-files';
import { parseFlatKeyed } from './cgroup-parse';
import type { Freezer, FreezerState } from './cgroup-dialect';

/**
 * cgroup-v2.rst, cgroup.freeze: "Writing 1 to the file causes freezing of the cgroup and all
 * descendant cgroups ... When the process of freezing is completed, the "frozen" value in the
 * cgroup.events control file will be updated to 1."
 */
export function unifiedFreezer(hierarchy = 'unified'): Freezer {
  return {
    hierarchy,
    request: (frozen) => ({ hierarchy, file: 'cgroup.freeze', value: frozen ? '1' : '0' }),
    stateFile: 'cgroup.events',
    state(files: ShardFileReader) {
      const text = files.required(hierarchy, 'cgroup.events');
      const frozen = parseNamed(files, hierarchy, 'cgroup.events', text, parseFlatKeyed).get('frozen') === 1;
      // The request is read back too: "frozen 1" alone may predate a thaw that is still in progress.
      const requested = files.required(hierarchy, 'cgroup.freeze').trim() === '1';
      const state: FreezerState['state'] = frozen === requested ? (frozen ? 'frozen' : 'thawed') : 'changing';
      return { state, text: text.trim().replace(/\n/g, ', ') };
    },
    killNeedsThaw: false,
  };
}

/**
 * cgroup-v1/freezer-subsystem.rst: writing FROZEN to freezer.state starts freezing; reading it
 * gives FREEZING until every task is stopped, then FROZEN. THAWED thaws.
 */
export function v1Freezer(hierarchy = 'freezer'): Freezer {
  return {
    hierarchy,
    request: (frozen) => ({ hierarchy, file: 'freezer.state', value: frozen ? 'FROZEN' : 'THAWED' }),
    stateFile: 'freezer.state',
    state(files: ShardFileReader) {
      const text = files.required(hierarchy, 'freezer.state').trim();
      return { state: (text === 'FROZEN' ? 'frozen' : text === 'THAWED' ? 'thawed' : 'changing') as FreezerState['state'], text };
    },
    killNeedsThaw: true,
  };
}
