#!/usr/bin/env node
// The `shardform` executable: runs the TypeScript CLI through tsx's require hook, so the
// installed package and the source tree are the same code (no stale build output).
require('tsx/cjs');
const { EXIT_BROKEN_PIPE } = require('./exit-codes.ts');

// A closed stdout or stderr (`| head -1`) ends every command here, once: quietly and at once,
// like a Unix tool killed by SIGPIPE, instead of an unhandled EPIPE stack trace (or going on
// computing output nobody reads). Any other stream error is still thrown.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(EXIT_BROKEN_PIPE);
  });
}

require('./main.ts').main(process.argv).then((code) => {
  process.exitCode = code;
});
