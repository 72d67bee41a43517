import { readTextFile } from '../contracts/plan';
import { EXIT_FAILURE } from './exit-codes';
import { ExitWith } from './main';
import type { Io } from './output';

/** Reads and parses a JSON file for a command: unreadable is a usage error (2), not JSON is invalid (1). */
export function readJsonFile(file: string, io: Io): unknown {
  const text = readTextFile(file);
  try {
    return JSON.parse(text);
  } catch (error) {
    io.err(`${file}: (root): not JSON: ${(error as Error).message}`);
    throw new ExitWith(EXIT_FAILURE);
  }
}
