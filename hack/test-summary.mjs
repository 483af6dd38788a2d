// Prints one line, "tests: N passed, N failed, N skipped", from vitest's JSON report (test-results/vitest.json).
import { readFileSync } from 'node:fs';

try {
  const r = JSON.parse(readFileSync(new URL('../test-results/vitest.json', import.meta.url), 'utf8'));
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
} catch (err) {
  console.log(`tests: no vitest report (${err.message})`);
}
