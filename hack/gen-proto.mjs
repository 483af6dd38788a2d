// `npm run gen:proto`: the TypeScript types of proto/csi.proto in src/csi/gen/, made by proto-loader's
// proto-loader-gen-types with the options the driver loads the proto with (src/csi/proto.ts,
// LOADER_OPTIONS). The output is checked in; test/unit/proto-gen.test.ts fails when it differs from a
// fresh generation or when these options differ from LOADER_OPTIONS.
//
//   node hack/gen-proto.mjs                  regenerate src/csi/gen/
//   node hack/gen-proto.mjs --out DIR        generate into DIR instead (replaced if it exists)
//   node hack/gen-proto.mjs --print-options  print the loader options used, as JSON
import { execFileSync } from 'node:child_process';
import { readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** LOADER_OPTIONS of src/csi/proto.ts, with the type constructors (String) by name. */
export const LOADER_OPTIONS = { keepCase: true, longs: 'String', enums: 'String', defaults: true, oneofs: true };

function flags(options) {
  return Object.entries(options).map(([k, v]) => (v === true ? `--${k}` : `--${k}=${v}`));
}

function generator() {
  const require = createRequire(import.meta.url);
  const pkgFile = require.resolve('@grpc/proto-loader/package.json', { paths: [root] });
  const bin = JSON.parse(readFileSync(pkgFile, 'utf8')).bin['proto-loader-gen-types'];
  return path.join(path.dirname(pkgFile), bin);
}

/** Generates into `out` (made anew: written beside it first, then renamed over it). */
export function generate(out) {
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    // Run from the checkout: each file names its source ("Original file: proto/csi.proto") relative to it.
    execFileSync(
      process.execPath,
      [
        generator(),
        ...flags(LOADER_OPTIONS),
        '--grpcLib=@grpc/grpc-js',
        // NodeNext module resolution: relative imports need their extension.
        '--importFileExtension=.js',
        '-I',
        'proto',
        '-O',
        tmp,
        'csi.proto',
      ],
      { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] },
    );
    rmSync(out, { recursive: true, force: true });
    renameSync(tmp, out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string' }, 'print-options': { type: 'boolean' } }, strict: true });
  if (values['print-options']) {
    process.stdout.write(`${JSON.stringify(LOADER_OPTIONS)}\n`);
  } else {
    const out = path.resolve(values.out ?? path.join(root, 'src', 'csi', 'gen'));
    generate(out);
    process.stderr.write(`generated ${path.relative(process.cwd(), out) || '.'} from proto/csi.proto\n`);
  }
}
