// `npm run gen:pools-schema`: writes docs/pools-file.schema.json from the pool keys in code
// (src/pools/pool-keys.ts); test/unit/pools-schema.test.ts fails when the file is behind.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { poolsFileSchema } from '../dist/src/pools/pool-keys.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const file = path.join(root, 'docs/pools-file.schema.json');
writeFileSync(file, `${JSON.stringify(poolsFileSchema(), null, 2)}\n`);
console.error(`wrote ${path.relative(root, file)}`);
