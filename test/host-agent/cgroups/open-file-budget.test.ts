import { defaultKeptFileLimit, OpenFileBudget, parseOpenFilesSoftLimit } from '../../../host-agent/cgroups';

/** /proc/<pid>/limits as proc(5) shows it (lines abridged). */
const limits = (soft: string, hard: string) =>
  [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max processes             63660                63660                processes ',
    `Max open files            ${soft.padEnd(21)}${hard.padEnd(21)}files     `,
    'Max locked memory         8388608              8388608              bytes     ',
  ].join('\n');

describe('open-file budget of the kept cgroup reader', () => {
  it('reads the soft "Max open files" limit, null when unlimited', () => {
    expect(parseOpenFilesSoftLimit(limits('20000', '20000'))).toBe(20000);
    expect(parseOpenFilesSoftLimit(limits('1024', '524288'))).toBe(1024);
    expect(parseOpenFilesSoftLimit(limits('unlimited', 'unlimited'))).toBeNull();
    expect(parseOpenFilesSoftLimit('Max processes 1 1 processes\n')).toBeUndefined();
  });

  it('keeps half the soft limit for cgroup files, and a bound when the limit cannot be read', () => {
    expect(defaultKeptFileLimit(() => limits('20000', '20000'))).toBe(10000);
    expect(defaultKeptFileLimit(() => limits('unlimited', 'unlimited'))).toBe(2 ** 19);
    expect(defaultKeptFileLimit(() => 'nothing useful')).toBe(512);
    expect(
      defaultKeptFileLimit(() => {
        throw new Error('ENOENT');
      }),
    ).toBe(512);
  });

  it('hands out descriptors until the limit and takes them back', () => {
    const budget = new OpenFileBudget(2);
    expect([budget.take(), budget.take(), budget.take()]).toEqual([true, true, false]);
    budget.give(1);
    expect(budget.inUse).toBe(1);
    expect(budget.take()).toBe(true);
    expect(new OpenFileBudget(0).take()).toBe(false);
  });
});
