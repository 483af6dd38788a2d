#!/usr/bin/env node
// hppctl, the node admin CLI: reads pool metadata directly (see src/admin/).
import { main } from '../src/admin/main.js';

process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // `hppctl volumes | head`: the reader went away.
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

main(process.argv.slice(2), process.env, {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
}).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`hppctl: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
