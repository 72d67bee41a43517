import type { Command } from 'commander';
import { checkDemandVector } from '../../contracts/demand-vector';
import { formatFieldError } from '../../errors';
import { EXIT_FAILURE } from '../exit-codes';
import { ExitWith } from '../main';
import type { Io } from '../output';
import { readJsonFile } from '../read-json';

/** `shardform vector validate FILE`: a file holds one vector or a JSON array of vectors. */
export function registerVectorCommands(program: Command, io: Io): void {
  const vector = program.command('vector').description('resource demand vectors');
  vector
    .command('validate')
    .argument('<file>', 'JSON file with one demand vector or an array of them')
    .description('check demand vectors against the schema; exit 0 valid, 1 invalid, 2 unreadable')
    .action((file: string) => {
      const data = readJsonFile(file, io);
      const vectors = Array.isArray(data) ? data : [data];
      let invalid = 0;
      vectors.forEach((candidate, index) => {
        const result = checkDemandVector(candidate);
        if (result.ok) return;
        invalid += 1;
        const where = Array.isArray(data) ? `${file}[${index}]` : file;
        for (const error of result.errors) io.err(`${where}: ${formatFieldError(error)}`);
      });
      if (invalid > 0) {
        io.err(`${invalid} of ${vectors.length} vector(s) invalid`);
        throw new ExitWith(EXIT_FAILURE);
      }
      io.out(`${file}: ${vectors.length} valid demand vector(s)`);
    });
}
