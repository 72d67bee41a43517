/**
 * The version of this Shardform build, from package.json: what `shardform --version` prints, what
 * an agent reports on /healthz and in `shardform_build_info`, so a fleet in a rolling upgrade
 * shows which agents run what.
 */
import packageJson from '../package.json';

export const SHARDFORM_VERSION: string = packageJson.version;
