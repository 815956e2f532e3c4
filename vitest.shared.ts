import { basename } from 'node:path';
import { defineConfig } from 'vitest/config';

// Each project also writes a JSON report, which scripts/run-tests.mjs totals.
const resultsDir = process.env.TEE_TEST_RESULTS_DIR;

// Integration tests start real sandboxes: give them time, and never retry a failure away.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    retry: 0,
    reporters: resultsDir
      ? ['default', ['json', { outputFile: `${resultsDir}/${basename(process.cwd())}.json` }]]
      : ['default'],
  },
});
