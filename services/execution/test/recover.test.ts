import { loadConfig } from '@assist-tee/config';
import {
  type Database,
  ExecutionEntity,
  ExecutionOutboxEntity,
  executionSchema,
  openDatabase,
} from '@assist-tee/db';
import { connectEventBus, type EventBus } from '@assist-tee/events';
import { createLogger } from '@assist-tee/logger';
import { type Outbox, startOutbox } from '@assist-tee/outbox';
import { createDockerClient, SandboxDriver } from '@assist-tee/sandbox';
import {
  createTestDatabase,
  deleteTestStream,
  type TestDatabase,
  testSubjectPrefix,
} from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finishAbandonedExecutions } from '../src/recover.js';

const logger = createLogger({ level: 'silent' });
const NATS = 'nats://127.0.0.1:4222';

// Real Postgres and NATS: which RUNNING rows count as lost, and that each is finished once.
describe('finishAbandonedExecutions', () => {
  const config = loadConfig({ TEE_INSTANCE_ID: 'me', TEE_STARTUP_TIMEOUT_MS: '1000' });
  let database: TestDatabase;
  let db: Database;
  let bus: EventBus;
  let outbox: Outbox;
  const sandbox = new SandboxDriver({
    docker: createDockerClient({ socketPath: '/var/run/docker.sock' }),
    logger,
    runtime: 'runsc',
  });

  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openDatabase({
      url: database.url,
      ...executionSchema,
      logger,
    });
    bus = await connectEventBus({
      servers: NATS,
      subjectPrefix: testSubjectPrefix(),
      name: 'recover-test',
      logger,
    });
    outbox = startOutbox({ db, entity: ExecutionOutboxEntity, bus, logger });
  });
  afterAll(async () => {
    await outbox?.close();
    const stream = bus?.streamName;
    await bus?.close();
    if (stream) await deleteTestStream(NATS, stream);
    await db?.close();
    await database?.drop();
  });

  async function running(id: string, instanceId: string, ageMs: number): Promise<void> {
    const em = db.em();
    em.create(ExecutionEntity, {
      id,
      tenantId: 'acme',
      environmentId: '00000000-0000-4000-8000-0000000000ee',
      status: 'RUNNING',
      result: null,
      error: null,
      logs: [],
      outputTruncated: false,
      exitCode: null,
      durationMs: null,
      limits: { timeoutMs: 1000, memoryMb: 128, maxOutputBytes: 1024, cpuMillicores: 100 },
      warm: false,
      instanceId,
      createdAt: new Date(Date.now() - ageMs),
      finishedAt: null,
    });
    await em.flush();
  }
  const status = async (id: string) =>
    (await db.em().findOneOrFail(ExecutionEntity, { id })).status;

  it('finishes its own RUNNING rows at start, and others only past deadline and grace', async () => {
    const own = '00000000-0000-4000-8000-000000000001';
    const othersOld = '00000000-0000-4000-8000-000000000002';
    const othersFresh = '00000000-0000-4000-8000-000000000003';
    await running(own, 'me', 0);
    await running(othersOld, 'other', 10 * 60_000);
    await running(othersFresh, 'other', 0);
    const deps = { config, db, logger, outbox, sandbox };

    expect(await finishAbandonedExecutions(deps, 'own')).toEqual([own]);
    expect(await finishAbandonedExecutions(deps, 'stuck')).toEqual([othersOld]);
    // Nothing is finished twice.
    expect(await finishAbandonedExecutions(deps, 'stuck')).toEqual([]);
    expect(await status(own)).toBe('SANDBOX_ERROR');
    expect(await status(othersOld)).toBe('SANDBOX_ERROR');
    expect(await status(othersFresh)).toBe('RUNNING');
    const events = await db.em().find(ExecutionOutboxEntity, { type: 'execution.finished' });
    expect(events).toHaveLength(2);
    expect(await outbox.drained(10_000)).toBe(true);
  });
});
