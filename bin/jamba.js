#!/usr/bin/env node
'use strict';
require('../dist/lib/cli/main.js')
  .main(process.argv.slice(2))
  .then((code) => { process.exitCode = code; })
  .catch((e) => { process.stderr.write(`jamba: internal error: ${e && e.stack ? e.stack : e}\n`); process.exitCode = 1; });
