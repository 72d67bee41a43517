/**
 * How the keeper asks "is this run still alive?" and "which process is the shard's main one?"
 * — an interface so the keeper's logic is unit-tested without real processes; ProcProbe is the
 * /proc implementation (see proc-info.ts for why identity is pid + start time).
 */
import { findNamespaceInit, isSameProcessAlive } from './proc-info';

export interface ProcessProbe {
  /** The PID-namespace init among the shard's pids (its main process), with its start time. */
  findMain(pids: readonly number[]): Promise<{ pid: number; startTime: number } | undefined>;
  /** True while the process (pid + start time) lives and is not a zombie. */
  alive(pid: number, startTime: number): Promise<boolean>;
}

export class ProcProbe implements ProcessProbe {
  constructor(private readonly procRoot = '/proc') {}

  async findMain(pids: readonly number[]): Promise<{ pid: number; startTime: number } | undefined> {
    const main = await findNamespaceInit(pids, undefined, this.procRoot);
    return main && { pid: main.pid, startTime: main.startTime };
  }

  alive(pid: number, startTime: number): Promise<boolean> {
    return isSameProcessAlive(pid, startTime, this.procRoot);
  }
}
