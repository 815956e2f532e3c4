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

function startReaper(overrides: Partial<Config> = {}): Promise<RunningProcess> {
  return startProcess({
    name: 'reaper-test',
    config: { ...config, ...overrides },
    logger: createLogger({ level: process.env.TEE_LOG_LEVEL ?? 'warn' }, { name: 'reaper-test' }),
    createServices: async (infrastructure) => [await createReaperService(infrastructure)],
  });
}

const deleted = () =>
  create(EnvironmentDeletedSchema, { ...eventHeader(), environmentId: 'env-1' });

const reaperClient = (reaper: RunningProcess) =>
  createClient(
    admin.ReaperService,
    createConnectTransport({
      baseUrl: reaper.url,
      httpVersion: '1.1',
      interceptors: [bearer(config.auth.serviceKey)],
    }),
  );

/** The reaper's status once it has consumed `count` environment.deleted events. */
async function eventuallyConsumed(reaper: RunningProcess, count: bigint) {
  const client = reaperClient(reaper);
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

  it('counts the sweeps it ran, and a failed one as failed', async () => {
    // Nothing listens there: the sweep fails on its first call, before it looks at Docker.
    const reaper = await startReaper({ environmentsUrl: 'http://127.0.0.1:1' });
    streamName = reaper.infrastructure.bus.streamName;
    try {
      await expect(reaperClient(reaper).sweep({})).rejects.toThrow();
      const text = await (await fetch(`${reaper.url}/metrics`)).text();
      const samples = text.split('\n').filter((line) => line.startsWith('assist_tee_reaper_'));
      expect(samples.sort()).toEqual([
        'assist_tee_reaper_last_success_timestamp_seconds 0',
        'assist_tee_reaper_removed_total{kind="container"} 0',
        'assist_tee_reaper_removed_total{kind="environment"} 0',
        'assist_tee_reaper_removed_total{kind="runsc_sandbox"} 0',
        'assist_tee_reaper_removed_total{kind="session"} 0',
        'assist_tee_reaper_removed_total{kind="volume"} 0',
        'assist_tee_reaper_sweeps_total{outcome="failed"} 1',
        'assist_tee_reaper_sweeps_total{outcome="ok"} 0',
      ]);
      // Its consumer, under its role.
      expect(text).toMatch(/^assist_tee_consumer_pending_events\{consumer="reaper"\} \d+$/m);
    } finally {
      await reaper.stop();
    }
  });
});
