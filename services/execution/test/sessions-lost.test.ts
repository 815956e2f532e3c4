import { randomUUID } from 'node:crypto';
import { loadConfig } from '@assist-tee/config';
import {
  type Database,
  ExecutionOutboxEntity,
  executionSchema,
  openDatabase,
  SessionEntity,
} from '@assist-tee/db';
import { createLogger } from '@assist-tee/logger';
import { type Outbox, outboxRow } from '@assist-tee/outbox';
import { createTestDatabase, type TestDatabase } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoreDeps } from '../src/deps.js';
import { Sessions } from '../src/sessions.js';

const MINUTE = 60_000;

// Real Postgres. The outbox writes its rows in the session's transaction; publishing is not
// what this test is about.
describe('ACTIVE sessions whose instance is gone', () => {
  let database: TestDatabase;
  let db: Database;
  let sessions: Sessions;

  async function insertSession(ago: { createdMs: number; lastCallMs?: number }) {
    const em = db.em();
    const now = Date.now();
    const createdAt = new Date(now - ago.createdMs);
    const row = em.create(SessionEntity, {
      id: randomUUID(),
      environmentId: randomUUID(),
      tenantId: 'acme',
      status: 'ACTIVE',
      limits: { timeoutMs: 1000, memoryMb: 128, maxOutputBytes: 4096, cpuMillicores: 100 },
      idleTimeoutMs: 5 * MINUTE,
      maxLifetimeMs: 60 * MINUTE,
      labels: {},
      endReason: null,
      endMessage: null,
      endExecutionId: null,
      callCount: 1,
      warm: true,
      instanceId: 'gone-instance',
      containerId: 'c-1',
      createdAt,
      lastCallAt: ago.lastCallMs === undefined ? null : new Date(now - ago.lastCallMs),
      expiresAt: new Date(createdAt.getTime() + 60 * MINUTE),
      endedAt: null,
    });
    await em.flush();
    return row.id;
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openDatabase({
      url: database.url,
      ...executionSchema,
      logger: createLogger({ level: 'silent' }),
    });
    const outbox = {
      add: (em, type, message) => void em.create(ExecutionOutboxEntity, outboxRow(type, message)),
      publishCommitted: () => {},
    } as Pick<Outbox, 'add' | 'publishCommitted'> as Outbox;
    const core = {
      config: loadConfig({}),
      db,
      outbox,
      logger: createLogger({ level: 'silent' }),
    } as CoreDeps;
    sessions = new Sessions(core);
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  it('ends as LOST those past their lifetime or idle timeout by more than a minute', async () => {
    const pastLifetime = await insertSession({ createdMs: 62 * MINUTE, lastCallMs: 0 });
    const idleLong = await insertSession({ createdMs: 10 * MINUTE, lastCallMs: 7 * MINUTE });
    const neverCalled = await insertSession({ createdMs: 7 * MINUTE });
    // Within the grace: their instance may still be about to end them.
    const idleRecently = await insertSession({ createdMs: 10 * MINUTE, lastCallMs: 5.5 * MINUTE });
    const young = await insertSession({ createdMs: 1 * MINUTE });

    const ended = await sessions.endStaleLost();
    expect(ended.sort()).toEqual([pastLifetime, idleLong, neverCalled].sort());
    const rows = await db.em().find(SessionEntity, {
      id: { $in: [pastLifetime, idleLong, neverCalled, idleRecently, young] },
    });
    const status = new Map(rows.map((row) => [row.id, [row.status, row.endReason]]));
    expect(status.get(pastLifetime)).toEqual(['ENDED', 'LOST']);
    expect(status.get(idleRecently)).toEqual(['ACTIVE', null]);
    expect(status.get(young)).toEqual(['ACTIVE', null]);
    // Each with its session.ended, written with the row.
    expect(await db.em().count(ExecutionOutboxEntity, { type: 'session.ended' })).toBe(3);
  });
});
