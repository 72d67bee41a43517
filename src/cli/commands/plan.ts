import type { Command } from 'commander';
import { checkPlan, readTextFile } from '../../contracts/plan';
import { formatFieldError } from '../../errors';
import { EXIT_FAILURE } from '../exit-codes';
import { ExitWith } from '../main';
import type { Io } from '../output';

export function registerPlanCommands(program: Command, io: Io): void {
  const plan = program.command('plan').description('inspect and check shard plans (shard-plan.json)');
  plan
    .command('validate')
    .argument('<file>', 'shard-plan.json')
    .description('check a plan: schema, references, capacity, digest; exit 0 valid, 1 invalid (every error listed), 2 unreadable')
    .action((file: string) => {
      const text = readTextFile(file);
      let data: unknown;
      try {
        data = JSON.parse(text);
      } catch (error) {
        io.err(`${file}: (root): not JSON: ${(error as Error).message}`);
        throw new ExitWith(EXIT_FAILURE);
      }
      const result = checkPlan(data);
      if (!result.ok) {
        for (const error of result.errors) io.err(`${file}: ${formatFieldError(error)}`);
        io.err(`${file}: invalid (${result.errors.length} error${result.errors.length === 1 ? '' : 's'})`);
        throw new ExitWith(EXIT_FAILURE);
      }
      io.out(`${file}: valid plan for fleet ${result.plan.fleet}, generation ${result.plan.generation}, ${result.plan.digest}`);
    });
}
