/** Prerequisite for suites that checkpoint with CRIU (see host-agent/checkpoint/criu.ts). */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { criuMajor, DEFAULT_CRIU_PREFIX, MIN_CRIU_MAJOR, parseCriuVersion, privateInstallation } from '../../host-agent/checkpoint/criu';
import { requireRoot, type Prerequisite } from './privileged';

/** Synchronous twin of locateCriu (describePrivileged probes before any test runs). */
export const requireCriu: Prerequisite = () => {
  const root = requireRoot();
  if (root) return root;
  const candidates: { file: string; args: string[] }[] = [];
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin']) {
    if (dir && existsSync(join(dir, 'criu'))) candidates.push({ file: join(dir, 'criu'), args: [] });
  }
  const prefixed = privateInstallation(process.env.SHARDFORM_CRIU_PREFIX ?? DEFAULT_CRIU_PREFIX);
  if (typeof prefixed !== 'string') candidates.push({ file: prefixed.file, args: [...prefixed.prefixArgs] });
  for (const candidate of candidates) {
    try {
      const version = parseCriuVersion(execFileSync(candidate.file, [...candidate.args, '--version'], { encoding: 'utf8', timeout: 10_000 }));
      if (!version || criuMajor(version) < MIN_CRIU_MAJOR) continue;
      execFileSync(candidate.file, [...candidate.args, 'check'], { stdio: 'ignore', timeout: 30_000 });
      return undefined;
    } catch {
      // try the next candidate
    }
  }
  return `needs CRIU >= ${MIN_CRIU_MAJOR} passing \`criu check\` (bash host-agent/checkpoint/install-criu.sh)`;
};

/** The kernel lets `criu lazy-pages` serve a restored tree's page faults (non-cooperative userfaultfd). */
export const requireLazyPages: Prerequisite = () => {
  const criu = requireCriu();
  if (criu) return criu;
  const prefixed = privateInstallation(process.env.SHARDFORM_CRIU_PREFIX ?? DEFAULT_CRIU_PREFIX);
  const [file, args] = typeof prefixed === 'string' ? ['criu', []] : [prefixed.file, [...prefixed.prefixArgs]];
  try {
    execFileSync(file, [...args, 'check', '--feature', 'uffd-noncoop'], { stdio: 'ignore', timeout: 30_000 });
    return undefined;
  } catch {
    return 'needs a kernel with non-cooperative userfaultfd (`criu check --feature uffd-noncoop`) for lazy restores';
  }
};

export const requirePython: Prerequisite = () => {
  try {
    execFileSync('python3', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'needs python3 (the checkpoint test workload; apt-get install python3)';
  }
};
