import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { type Database, EnvironmentEntity, environmentsSchema, openDatabase } from '@assist-tee/db';
import { eventHeader, type ReceivedEvent } from '@assist-tee/events';
import { createLogger } from '@assist-tee/logger';
import { ExecutionFinishedSchema } from '@assist-tee/proto';
import { createTestDatabase, type TestDatabase } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordExecutionFinished } from '../src/consumers/record-execution.js';

const logger = createLogger({ level: 'silent' });
const environmentId = '00000000-0000-4000-8000-00000000000a';
const created = new Date('2026-01-01T00:00:00Z');

function finished(finishTime: Date): ReceivedEvent {
  const message = create(ExecutionFinishedSchema, {
    ...eventHeader(),
    execution: {
      id: crypto.randomUUID(),
      environmentId,
      finishTime: timestampFromDate(finishTime),
    },
  });
  return {
    type: 'execution.finished',
    message,
    subject: 'test.execution.finished',
    streamSequence: 1,
    redelivered: false,
  };
}

// Against a real Postgres: the consumer's idempotency lives in the database.
describe('recordExecutionFinished', () => {
  let database: TestDatabase;
  let db: Database;
  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openDatabase({
      url: database.url,
      ...environmentsSchema,
      logger,
    });
    const em = db.em();
    em.create(EnvironmentEntity, {
      tenantId: 'acme',
      id: environmentId,
      status: 'READY',
      runtime: 'DENO',
      mainModule: 'main.ts',
      modulePaths: ['main.ts'],
      modulesSizeBytes: 1,
      dependencies: { npm: [], url: [] },
      permissions: { allowNet: [], allowEnv: [] },
      ttlSeconds: 60,
      labels: {},
      error: null,
      lockfile: null,
      executionCount: 0,
      createdAt: created,
      updatedAt: created,
      lastUsedAt: created,
      deletedAt: null,
    });
    await em.flush();
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  const row = () => db.em().findOneOrFail(EnvironmentEntity, { id: environmentId });

  it('counts each execution once, however often its event arrives, and keeps the latest use', async () => {
    const handle = recordExecutionFinished({ db, logger });
    const later = new Date('2026-02-01T00:00:00Z');
    const first = finished(later);
    await handle(first);
    await handle({ ...first, redelivered: true });
    expect(await row()).toMatchObject({ executionCount: 1, lastUsedAt: later });

    // An older execution finishing late counts, but does not move last use back.
    await handle(finished(new Date('2026-01-15T00:00:00Z')));
    expect(await row()).toMatchObject({ executionCount: 2, lastUsedAt: later });
  });
});
