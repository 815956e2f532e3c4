import type { SandboxDriver, SandboxLabels } from '@assist-tee/sandbox';
import { expectNothingLabelled } from '@assist-tee/testing';
import { expect } from 'vitest';
import { queryRows } from './postgres.js';

/**
 * How every fault test ends: each Execution row is in a final state, and no container or
 * volume carrying these labels is left.
 */
export async function expectSettled(options: {
  sandbox: SandboxDriver;
  databaseUrl: string;
  labels: Partial<SandboxLabels>;
}): Promise<void> {
  const running = await queryRows(
    options.databaseUrl,
    `select id from execution.execution where status = 'RUNNING'`,
  );
  expect(running).toEqual([]);
  await expectNothingLabelled(options.sandbox, options.labels);
}
