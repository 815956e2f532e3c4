// Runs every project's tests through Nx (one project at a time: they share this machine's two
// cores and its Docker engine), then prints one total line from vitest's JSON reports.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const resultsDir = join(import.meta.dirname, '..', '.test-results');
rmSync(resultsDir, { recursive: true, force: true });
mkdirSync(resultsDir, { recursive: true });

const run = spawnSync(
  'npx',
  ['nx', 'run-many', '-t', 'test', '--skip-nx-cache', '--parallel=1', '--output-style=stream'],
  { stdio: 'inherit', env: { ...process.env, TEE_TEST_RESULTS_DIR: resultsDir } },
);

let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of readdirSync(resultsDir)) {
  const report = JSON.parse(readFileSync(join(resultsDir, file), 'utf8'));
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  skipped += report.numPendingTests + report.numTodoTests;
}
console.log(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(run.status === 0 && failed === 0 && passed > 0 ? 0 : 1);
