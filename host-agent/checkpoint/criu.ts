/**
 * Finds the CRIU this host checkpoints with and builds its command line.
 *
 * Two kinds (see install-criu.sh): a system `criu` whose version is >= 4, or the private
 * prefix (default /opt/shardform/criu) holding Debian trixie's CRIU and its libraries, which
 * must run through the prefix's own dynamic loader because the host's libc is older:
 *   <prefix>/usr/lib64/ld-linux-x86-64.so.2 --library-path <prefix libs> <prefix>/usr/sbin/criu ARGS
 * A system criu < 4 is reported but not used: Debian 12's 3.17 fails on recent kernels (vdso).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CheckpointError } from './checkpoint-error';

const execFileAsync = promisify(execFile);

export const DEFAULT_CRIU_PREFIX = '/opt/shardform/criu';
export const MIN_CRIU_MAJOR = 4;

/** The agent's on/off switches for how it uses CRIU (environment variables, each default `on`). */
export const CRIU_SWITCHES = ['SHARDFORM_CRIU_KDAT_CACHE', 'SHARDFORM_CRIU_LAZY_PAGES', 'SHARDFORM_CRIU_STREAM_DUMP'] as const;

/**
 * Whether switch `name` is on: unset or `on` is on, `off` is off; any other value is a usage
 * error naming the variable and the value.
 */
export function criuSwitchOn(name: (typeof CRIU_SWITCHES)[number], env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env[name] ?? 'on';
  if (value !== 'on' && value !== 'off') throw new Error(`${name}=${JSON.stringify(value)} must be on or off`);
  return value === 'on';
}

export interface CriuInstallation {
  readonly kind: 'system' | 'private';
  /** `4.1.1`. */
  readonly version: string;
  /** The executable to spawn (the criu binary, or the prefix's loader). */
  readonly file: string;
  /** Arguments that come before criu's own (loader flags and the criu binary), else empty. */
  readonly prefixArgs: readonly string[];
}

export interface LocateCriuOptions {
  /** Private prefix; default SHARDFORM_CRIU_PREFIX or /opt/shardform/criu. */
  prefix?: string;
  /** Directories searched for a system criu; default PATH plus /usr/sbin and /sbin. */
  searchPath?: readonly string[];
}

/** The result of a search: an installation, or every reason none was usable. */
export type CriuLocation = { found: true; criu: CriuInstallation } | { found: false; reasons: string[] };

/** Loader candidates of a merged-/usr (trixie) or split prefix, per architecture. */
const LOADERS: Record<string, { loader: string[]; triplet: string }> = {
  x64: { loader: ['usr/lib64/ld-linux-x86-64.so.2', 'lib64/ld-linux-x86-64.so.2'], triplet: 'x86_64-linux-gnu' },
  arm64: { loader: ['usr/lib/ld-linux-aarch64.so.1', 'lib/ld-linux-aarch64.so.1'], triplet: 'aarch64-linux-gnu' },
};

/** The command line that runs criu with `args` (pure). */
export function criuCommandLine(criu: CriuInstallation, args: readonly string[]): { file: string; args: string[] } {
  return { file: criu.file, args: [...criu.prefixArgs, ...args] };
}

/** Parses `criu --version` output ("Version: 4.1.1\n...") into `4.1.1`. */
export function parseCriuVersion(output: string): string | undefined {
  const match = /Version:\s*([0-9]+(?:\.[0-9]+)*)/.exec(output);
  return match?.[1];
}

export function criuMajor(version: string): number {
  return Number.parseInt(version.split('.')[0] ?? '0', 10);
}

/** How the private prefix would be run, if install-criu.sh completed there (pure apart from existsSync). */
export function privateInstallation(prefix: string, arch: string = process.arch): Omit<CriuInstallation, 'version'> | string {
  const layout = LOADERS[arch];
  if (!layout) return `no private CRIU layout for architecture ${arch}`;
  const binary = join(prefix, 'usr/sbin/criu');
  if (!existsSync(binary)) return `no private CRIU at ${binary}`;
  // install-criu.sh writes the marker last and removes it before touching the tree.
  const marker = join(prefix, '.installed');
  if (!existsSync(marker)) return `private CRIU at ${prefix} is not completely installed (no ${marker}: an install was stopped half-way); run host-agent/checkpoint/install-criu.sh again`;
  const loader = layout.loader.map((l) => join(prefix, l)).find((l) => existsSync(l));
  if (!loader) return `private CRIU at ${prefix} has no dynamic loader (${layout.loader.join(' or ')})`;
  const libraryPath = [`usr/lib/${layout.triplet}`, `lib/${layout.triplet}`, 'usr/lib', 'lib'].map((d) => join(prefix, d)).join(':');
  return { kind: 'private', file: loader, prefixArgs: ['--library-path', libraryPath, binary] };
}

async function versionOf(candidate: Omit<CriuInstallation, 'version'>): Promise<string> {
  const { stdout } = await execFileAsync(candidate.file, [...candidate.prefixArgs, '--version'], { timeout: 10_000 });
  const version = parseCriuVersion(stdout);
  if (!version) throw new Error(`unrecognised \`criu --version\` output: ${JSON.stringify(stdout.slice(0, 80))}`);
  return version;
}

/** Finds a usable CRIU: the system one when it is >= 4, else the private prefix. */
export async function locateCriu(opts: LocateCriuOptions = {}): Promise<CriuLocation> {
  const reasons: string[] = [];
  const searchPath = opts.searchPath ?? [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/sbin'];
  const systemBinary = searchPath.map((d) => join(d, 'criu')).find((f) => existsSync(f));
  if (systemBinary) {
    try {
      const version = await versionOf({ kind: 'system', file: systemBinary, prefixArgs: [] });
      if (criuMajor(version) >= MIN_CRIU_MAJOR) return { found: true, criu: { kind: 'system', version, file: systemBinary, prefixArgs: [] } };
      reasons.push(`system criu ${version} at ${systemBinary} is older than ${MIN_CRIU_MAJOR}.0 (fails on recent kernels)`);
    } catch (error) {
      reasons.push(`system criu at ${systemBinary} does not run: ${(error as Error).message.split('\n')[0]}`);
    }
  } else {
    reasons.push('no criu on PATH');
  }
  const prefix = opts.prefix ?? process.env.SHARDFORM_CRIU_PREFIX ?? DEFAULT_CRIU_PREFIX;
  const candidate = privateInstallation(prefix);
  if (typeof candidate === 'string') {
    reasons.push(candidate);
    return { found: false, reasons };
  }
  try {
    const version = await versionOf(candidate);
    if (criuMajor(version) >= MIN_CRIU_MAJOR) return { found: true, criu: { ...candidate, version } };
    reasons.push(`private criu ${version} in ${prefix} is older than ${MIN_CRIU_MAJOR}.0`);
  } catch (error) {
    reasons.push(`private criu in ${prefix} does not run: ${(error as Error).message.split('\n')[0]}`);
  }
  return { found: false, reasons };
}

/** Like locateCriu, but throws CRIU_NOT_FOUND with every reason. */
export async function requireCriu(opts: LocateCriuOptions = {}): Promise<CriuInstallation> {
  const location = await locateCriu(opts);
  if (location.found) return location.criu;
  throw new CheckpointError('CRIU_NOT_FOUND', `no usable CRIU >= ${MIN_CRIU_MAJOR}: ${location.reasons.join('; ')}`);
}
