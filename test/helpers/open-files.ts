/**
 * The files a process holds open, from /proc/<pid>/fd (proc(5)): how the tests check that the
 * cgroup driver's kept descriptors are closed, counting them as the kernel sees them rather than
 * through the driver's own bookkeeping. A file deleted while open reads back as "<path> (deleted)"
 * and still counts.
 */
import { readdirSync, readlinkSync, realpathSync } from 'node:fs';

/** Targets of `pid`'s descriptors that lie under any of `dirs` (symlinks in `dirs` resolved where they still exist), sorted. */
export function openFilesUnder(dirs: string | readonly string[], pid: number | 'self' = 'self'): string[] {
  const prefixes = (typeof dirs === 'string' ? [dirs] : dirs).map((dir) => {
    let real = dir;
    try {
      real = realpathSync(dir);
    } catch {
      // gone already (a removed cgroup): its descriptors still name it as it was
    }
    return real.endsWith('/') ? real : `${real}/`;
  });
  const out: string[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (the descriptor readdir itself used, for one)
    }
    if (prefixes.some((p) => target.startsWith(p))) out.push(target);
  }
  return out.sort();
}
