#!/usr/bin/env node
// The `shardform` executable: runs the TypeScript CLI through tsx's require hook, so the
// installed package and the source tree are the same code (no stale build output).
require('tsx/cjs');
require('./main.ts').main(process.argv).then((code) => {
  process.exitCode = code;
});
