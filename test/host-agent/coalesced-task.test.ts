import { CoalescedTask } from '../../host-agent/coalesced-task';

describe('CoalescedTask', () => {
  it('runs once at a time, and calls during a run share exactly one follow-up run that sees their trigger', async () => {
    let runs = 0;
    let active = 0;
    let maxActive = 0;
    const release: (() => void)[] = [];
    const task = new CoalescedTask(async () => {
      active += 1;
      maxActive = Math.max(maxActive, active);
      const n = ++runs;
      await new Promise<void>((resolve) => release.push(resolve));
      active -= 1;
      return n;
    });
    const first = task.run();
    const second = task.run();
    const third = task.run();
    expect(second).toBe(third);
    release.shift()!();
    expect(await first).toBe(1);
    await new Promise((r) => setImmediate(r));
    release.shift()!();
    expect(await second).toBe(2);
    expect(runs).toBe(2);
    expect(maxActive).toBe(1);
    await task.idle();
  });

  it('keeps going after a failed run', async () => {
    let n = 0;
    const task = new CoalescedTask(async () => {
      n += 1;
      if (n === 1) throw new Error('boom');
      return n;
    });
    const failing = task.run();
    const after = task.run();
    await expect(failing).rejects.toThrow('boom');
    expect(await after).toBe(2);
  });
});
