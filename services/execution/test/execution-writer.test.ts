import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import {
  type Database,
  ExecutionEntity,
  ExecutionOutboxEntity,
  executionSchema,
  openDatabase,
} from '@assist-tee/db';
import { eventHeader } from '@assist-tee/events';
import { createLogger } from '@assist-tee/logger';
import type { Outbox, OutboxEvent } from '@assist-tee/outbox';
import { ExecutionStartedSchema } from '@assist-tee/proto';
import { createTestDatabase, type TestDatabase } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExecutionWriter } from '../src/execution-writer.js';

const row = (result: ExecutionEntity['result']): ExecutionEntity => ({
  id: randomUUID(),
  environmentId: randomUUID(),
  tenantId: 'acme',
  sessionId: null,
  status: 'SUCCEEDED',
  result,
  error: null,
  logs: [{ level: 'INFO', message: 'hello', time: 1 }],
  outputTruncated: false,
  exitCode: 0,
  durationMs: 3,
  limits: { timeoutMs: 1000, memoryMb: 128, maxOutputBytes: 1024, cpuMillicores: 100 },
  warm: true,
  coldStartReason: null,
  instanceId: 'me',
  traceId: null,
  createdAt: new Date(1_000),
  finishedAt: new Date(2_000),
});

const startedEvent = (execution: ExecutionEntity): OutboxEvent => ({
  type: 'execution.started',
  message: create(ExecutionStartedSchema, {
    ...eventHeader(),
    executionId: execution.id,
    environmentId: execution.environmentId,
    tenantId: execution.tenantId,
  }),
});

// Real Postgres; the outbox only records what it is handed to publish.
describe('ExecutionWriter', () => {
  const logger = createLogger({ level: 'silent' });
  const published: OutboxEvent[] = [];
  const outbox: Pick<Outbox, 'publishCommitted'> = {
    publishCommitted: (events) => void published.push(...events),
  };
  let database: TestDatabase;
  let db: Database;
  let writer: ExecutionWriter;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openDatabase({ url: database.url, ...executionSchema, logger });
    writer = new ExecutionWriter({ db, outbox });
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  it('writes the calls that come while a write is in flight together, in one statement', async () => {
    published.length = 0;
    // A result may hold U+0000 (a json column, not jsonb).
    const results = ['a string\u0000', 42, [1, 'two'], null, { nested: { ok: true } }];
    const rows = results.map(row);
    const events = rows.map(startedEvent);
    await Promise.all(rows.map((execution, i) => writer.write(execution, [events[i]!])));

    // The first alone, the other four in the next statement: rows that one transaction
    // inserted share its id (xmin).
    const stored = await db.em().execute<{ id: string; xmin: string }[]>(
      `select "id", xmin::text as "xmin" from "execution"."execution" where "id" in (?, ?, ?, ?, ?)`,
      rows.map((execution) => execution.id),
    );
    const transactionOf = new Map(stored.map(({ id, xmin }) => [id, xmin]));
    const [first, ...rest] = rows.map((execution) => transactionOf.get(execution.id));
    expect(new Set(rest).size).toBe(1);
    expect(rest[0]).not.toBe(first);
    expect(published.map((event) => event.message.eventId)).toEqual(
      events.map((event) => event.message.eventId),
    );
    for (const [i, execution] of rows.entries()) {
      const read = await db.em().findOneOrFail(ExecutionEntity, execution.id);
      expect(read.result).toEqual(results[i]);
      expect(read.logs).toEqual(execution.logs);
      expect(read.createdAt).toEqual(execution.createdAt);
    }
    const outboxRows = await db.em().find(ExecutionOutboxEntity, {
      eventId: { $in: events.map((event) => event.message.eventId) },
    });
    expect(outboxRows.map((stored) => [stored.type, stored.publishedAt])).toEqual(
      events.map(() => ['execution.started', null]),
    );
  });

  it('fails every call of a statement that fails, and commits none of them', async () => {
    const existing = row(1);
    await writer.write(existing, []);
    published.length = 0;
    const fresh = row(2);
    const event = startedEvent(fresh);
    // In one statement: a row whose id is taken fails it, and the fresh row goes with it.
    const [first, second, third] = await Promise.allSettled([
      writer.write(row(0), []),
      writer.write(fresh, [event]),
      writer.write({ ...row(3), id: existing.id }, []),
    ]);
    expect(first.status).toBe('fulfilled');
    expect([second.status, third.status]).toEqual(['rejected', 'rejected']);
    expect(await db.em().count(ExecutionEntity, { id: fresh.id })).toBe(0);
    expect(await db.em().count(ExecutionOutboxEntity, { eventId: event.message.eventId })).toBe(0);
    expect(published).toEqual([]);
  });
});
