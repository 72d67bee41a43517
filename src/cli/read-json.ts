import { readTextFile } from '../contracts/plan';
import { EXIT_FAILURE } from './exit-codes';
import { ExitWith } from './main';
import type { Io } from './output';
import { invalidFlag } from './commands/invalid-flag';

/** Reads and parses a JSON file for a command: unreadable is a usage error (2), not JSON is invalid (1). */
export function readJsonFile(file: string, io: Io): unknown {
  // An unset variable in a script (`plan validate "$PLAN"`): said as such, not `cannot read : ENOENT`.
  if (file.trim() === '') throw invalidFlag('<file>', file, 'a file name; give the path of the JSON file');
  const text = readTextFile(file);
  try {
    return JSON.parse(text);
  } catch (error) {
    io.err(`${file}: (root): not JSON: ${(error as Error).message}`);
    throw new ExitWith(EXIT_FAILURE);
  }
}
