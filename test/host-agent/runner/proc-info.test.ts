import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findNamespaceInit, isSameProcessAlive, parseNsPids, parseProcStat } from '../../../host-agent/runner/proc-info';

const stat = (pid: number, comm: string, state: string, ppid: number, start: number) =>
  `${pid} (${comm}) ${state} ${ppid} ${pid} ${pid} 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 ${start} 1000 100 18446744073709551615\n`;

describe('proc-info', () => {
  it('parses stat fields after the last parenthesis, even when comm holds ") ("', () => {
    expect(parseProcStat(stat(42, 'evil) S 7 (x', 'S', 9, 12345))).toEqual({ pid: 42, state: 'S', ppid: 9, startTime: 12345 });
    expect(parseProcStat('garbage')).toBeUndefined();
  });

  it('parses NSpid, outermost first', () => {
    expect(parseNsPids('Name:\tsleep\nNSpid:\t7269\t1\nPPid: 1\n')).toEqual([7269, 1]);
    expect(parseNsPids('Name:\tsleep\n')).toBeUndefined();
  });

  it('reads the real stat of this process and recognises it by start time', async () => {
    const me = parseProcStat(readFileSync(`/proc/${process.pid}/stat`, 'utf8'));
    expect(me?.pid).toBe(process.pid);
    expect(await isSameProcessAlive(process.pid, me!.startTime)).toBe(true);
    expect(await isSameProcessAlive(process.pid, me!.startTime + 1)).toBe(false);
  });

  describe('findNamespaceInit on a fixture /proc', () => {
    let proc: string;
    const add = (pid: number, ns: number[], ppid: number, state = 'S') => {
      mkdirSync(join(proc, String(pid)), { recursive: true });
      writeFileSync(join(proc, String(pid), 'stat'), stat(pid, 'w', state, ppid, 100 + pid));
      writeFileSync(join(proc, String(pid), 'status'), `Name:\tw\nNSpid:\t${ns.join('\t')}\n`);
    };
    beforeEach(() => {
      proc = mkdtempSync(join(tmpdir(), 'proc-'));
      add(process.pid, [process.pid], 1);
    });
    afterEach(() => rmSync(proc, { recursive: true, force: true }));

    it('picks the process whose innermost NSpid is 1, not the unshare parent or other members', async () => {
      add(500, [500], 499); // unshare, in our namespace
      add(501, [501, 1], 500); // the namespace init: the main pid
      add(502, [502, 2], 501);
      expect((await findNamespaceInit([500, 501, 502], undefined, proc))?.pid).toBe(501);
    });

    it('prefers the outermost init when the workload nests its own PID namespace', async () => {
      add(601, [601, 3, 1], 600);
      add(600, [600, 1], 599);
      expect((await findNamespaceInit([601, 600], undefined, proc))?.pid).toBe(600);
    });

    it('ignores zombies and finds nothing in a cgroup without a namespace init', async () => {
      add(700, [700, 1], 1, 'Z');
      add(701, [701], 1);
      expect(await findNamespaceInit([700, 701], undefined, proc)).toBeUndefined();
    });
  });
});
