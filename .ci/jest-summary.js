#!/usr/bin/env node
// The closing line of .ci/run, "N passed, N failed, N skipped", from jest's --json results and the
// test command's exit status: node .ci/jest-summary.js RESULTS.json STATUS
//
// A test file can fail with no failing test in it: it does not load (no tests at all), or an
// afterAll hook throws after its tests passed. Each such file counts as one failure. A non-zero
// status the results do not explain (jest found no tests, or the results are missing because tsc,
// npm ci or jest itself failed first) counts as one failure too, so the line never says
// "0 failed" for a run that failed.
const { readFileSync } = require('node:fs');

const [file, statusArg] = process.argv.slice(2);
const status = Number(statusArg);
if (!file || !/^[0-9]+$/.test(statusArg ?? '')) {
  console.error('usage: node .ci/jest-summary.js RESULTS.json EXIT_STATUS');
  process.exit(2);
}
let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const r = JSON.parse(readFileSync(file, 'utf8'));
  const failedWithoutTest = r.testResults.filter((s) => s.status === 'failed' && !s.assertionResults.some((a) => a.status === 'failed'));
  passed = r.numPassedTests;
  failed = r.numFailedTests + failedWithoutTest.length;
  skipped = r.numPendingTests + r.numTodoTests;
} catch (error) {
  console.error(`no jest results in ${file}: ${error.message.split('\n')[0]}`);
}
if (status !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
