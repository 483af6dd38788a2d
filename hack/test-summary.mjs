// Prints one line, "tests: N passed, N failed, N skipped", from vitest's JSON report
// (test-results/vitest.json, or the FILE given, with LABEL instead of "tests").
// Usage: node hack/test-summary.mjs [FILE [LABEL]]
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? new URL('../test-results/vitest.json', import.meta.url);
const label = process.argv[3] ?? 'tests';
try {
  const r = JSON.parse(readFileSync(file, 'utf8'));
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(`${label}: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
} catch (err) {
  console.log(`${label}: no vitest report (${err.message})`);
}
