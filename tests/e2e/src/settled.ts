import type { SandboxDriver, SandboxLabels } from '@assist-tee/sandbox';
import type { ReceivedEvent } from '@assist-tee/events';
import { type CollectedEvents, expectNothingLabelled } from '@assist-tee/testing';
import { expect, vi } from 'vitest';
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

/** Events written to the services' outboxes and not yet published. */
export async function pendingEvents(databaseUrl: string): Promise<number> {
  const [row] = await queryRows<{ count: string }>(
    databaseUrl,
    `select count(*) from (select event_id from environments.outbox where published_at is null
      union all select event_id from execution.outbox where published_at is null) pending`,
  );
  return Number(row?.count);
}

/**
 * Waits until the outboxes have nothing left to publish and `events` holds every event
 * published, so that a test can assert that an event did not come twice.
 */
export async function allEventsIn(
  databaseUrl: string,
  events: CollectedEvents,
  timeoutMs = 30_000,
): Promise<ReceivedEvent[]> {
  await vi.waitFor(async () => expect(await pendingEvents(databaseUrl)).toBe(0), {
    timeout: timeoutMs,
    interval: 100,
  });
  return events.caughtUp(timeoutMs);
}
