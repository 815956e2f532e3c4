import { create } from '@bufbuild/protobuf';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { type Config, loadConfig } from '@assist-tee/config';
import { connectEventBus, eventHeader } from '@assist-tee/events';
import { createLogger } from '@assist-tee/logger';
import { admin, EnvironmentDeletedSchema } from '@assist-tee/proto';
import { bearer, type RunningProcess, startProcess } from '@assist-tee/server';
import {
  createTestDatabase,
  deleteTestStream,
  type TestDatabase,
  testSubjectPrefix,
  uniqueSuffix,
} from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createReaperService } from '../src/index.js';

// The reaper alone, on this test's own stream and database (sweeps are tested end to end).
let database: TestDatabase;
let config: Config;
beforeAll(async () => {
  database = await createTestDatabase();
  config = loadConfig({
    ...process.env,
    TEE_DATABASE_URL: database.url,
    TEE_SUBJECT_PREFIX: testSubjectPrefix(),
    TEE_INSTANCE_ID: `test-${uniqueSuffix()}`,
    TEE_PORT: '0',
    TEE_SHUTDOWN_GRACE_MS: '1000',
    // Its clients of the other services would call with it; GetStatus takes it.
    TEE_SERVICE_KEY: `test-service-key-${uniqueSuffix()}`,
  });
});

function startReaper(): Promise<RunningProcess> {
  return startProcess({
    name: 'reaper-test',
    config,
    logger: createLogger({ level: process.env.TEE_LOG_LEVEL ?? 'warn' }, { name: 'reaper-test' }),
    createServices: async (infrastructure) => [await createReaperService(infrastructure)],
  });
}

const deleted = () =>
  create(EnvironmentDeletedSchema, { ...eventHeader(), environmentId: 'env-1' });

/** The reaper's status once it has consumed `count` environment.deleted events. */
async function eventuallyConsumed(reaper: RunningProcess, count: bigint) {
  const client = createClient(
    admin.ReaperService,
    createConnectTransport({
      baseUrl: reaper.url,
      httpVersion: '1.1',
      interceptors: [bearer(config.auth.serviceKey)],
    }),
  );
  return vi.waitFor(
    async () => {
      const status = await client.getStatus({});
      expect(status.eventsConsumed['environment.deleted'] ?? 0n).toBe(count);
      return status;
    },
    { timeout: 10_000, interval: 100 },
  );
}

describe('the reaper service', () => {
  let streamName: string | undefined;
  afterAll(async () => {
    if (streamName) await deleteTestStream(config.nats.servers, streamName);
    await database?.drop();
  });

  it('reports its status and follows events durably', async () => {
    let reaper = await startReaper();
    streamName = reaper.infrastructure.bus.streamName;
    try {
      await reaper.infrastructure.bus.publish('environment.deleted', deleted());
      const first = await eventuallyConsumed(reaper, 1n);
      expect(first.instanceId).toBe(config.instanceId);
      expect(first.lastSweep).toBeUndefined();
    } finally {
      await reaper.stop();
    }

    // Published while no reaper runs: the durable consumer delivers it at the next start,
    // and only it (the first was acked).
    const publisher = await connectEventBus({
      servers: config.nats.servers,
      subjectPrefix: config.nats.subjectPrefix,
      name: 'reaper-test-publisher',
      logger: createLogger({ level: 'silent' }),
    });
    await publisher.publish('environment.deleted', deleted());
    await publisher.close();
    reaper = await startReaper();
    try {
      await eventuallyConsumed(reaper, 1n);
    } finally {
      await reaper.stop();
    }
  });
});
