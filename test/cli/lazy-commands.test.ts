import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');

/** The project files and packages a process has loaded after requiring `modules` (through tsx, like bin.js). */
function loadedAfter(modules: string[]): string[] {
  const script = `require('tsx/cjs'); for (const m of ${JSON.stringify(modules)}) require(m); process.stdout.write(JSON.stringify(Object.keys(require.cache)));`;
  const loaded = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8' })) as string[];
  return loaded.map((path) => path.slice(ROOT.length + 1));
}

describe('lazy command modules', () => {
  it('starts the CLI without the agent, the trace readers or the progress bar', () => {
    const loaded = loadedAfter(['./src/cli/main.ts']);
    expect(loaded).toContain('src/cli/commands/agent.ts');
    for (const heavy of ['host-agent/agent.ts', 'host-agent/local-drain.ts', 'src/traces/trace-loader.ts', 'src/cli/commands/progress.ts', 'src/cli/commands/predict-history.ts']) {
      expect(loaded).not.toContain(heavy);
    }
    expect(loaded.filter((path) => path.startsWith('node_modules/cli-progress/'))).toEqual([]);
  }, 30_000);

  it('leaves the offline tools out of the agent: what its command loads when it runs', () => {
    const loaded = loadedAfter(['./src/cli/main.ts', './host-agent/agent.ts', './host-agent/agent-migration.ts', './host-agent/agent-parts.ts', './host-agent/log.ts']);
    expect(loaded).toContain('host-agent/agent.ts');
    for (const offline of ['src/predictor/backtest-suite.ts', 'src/predictor/backtest.ts', 'src/traces/trace-loader.ts', 'src/cli/commands/progress.ts', 'src/cli/commands/predict-history.ts', 'host-agent/local-drain.ts']) {
      expect(loaded).not.toContain(offline);
    }
  }, 30_000);
});
