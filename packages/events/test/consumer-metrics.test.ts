import { create } from '@bufbuild/protobuf';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  DeletionReason,
  EnvironmentDeletedSchema,
  ExecutionStartedSchema,
} from '@assist-tee/proto';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { consumerFilter } from '../src/durable-consumer.js';
import { connectEventBus, eventHeader, type EventBus } from '../src/index.js';
import {
  caughtUp,
  deleteStream,
  eventually,
  NATS_URL,
  rawConnection,
  testLogger,
  testPrefix,
} from './support.js';

// A real NATS: the outcomes are counted as the consumer acks, naks and terminates, and the lag
// is JetStream's own.
describe('consumer metrics', () => {
  let prefix: string;
  let registry: Registry;
  let bus: EventBus;

  beforeEach(async () => {
    prefix = testPrefix();
    registry = new Registry();
    bus = await connectEventBus({
      servers: NATS_URL,
      subjectPrefix: prefix,
      name: 'consumer-metrics-test',
      logger: testLogger(),
      registry,
    });
  });
  afterEach(async () => {
    await bus.close();
    await deleteStream(bus.streamName);
  });

  /** The scrape's samples labelled consumer="role", by name and outcome. */
  const scrape = async () => {
    const samples = new Map<string, number>();
    for (const line of (await registry.metrics()).split('\n')) {
      const match = /^(\w+)\{consumer="role"(?:,outcome="(\w+)")?\} (\S+)$/.exec(line);
      if (match) samples.set(match[2] ? `${match[1]}:${match[2]}` : match[1]!, Number(match[3]));
    }
    return samples;
  };
  const started = () =>
    create(ExecutionStartedSchema, {
      ...eventHeader(),
      executionId: crypto.randomUUID(),
      environmentId: crypto.randomUUID(),
      tenantId: 'acme',
    });

  it('counts outcomes and redeliveries by role, and reads the lag at each scrape', async () => {
    const nc = await rawConnection();
    // nats-server 2.9 cannot filter on several subjects: the consumer is sent all, and skips.
    const canFilter =
      consumerFilter(prefix, ['execution.started'], nc.info?.version ?? '0.0.0').filter_subjects !==
      undefined;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const attempts = new Map<string, number>();
    const fine = [started(), started()];
    const flaky = started();
    const hopeless = started();
    const consumer = await bus.consume({
      durable: 'role-instance-1',
      metricsName: 'role',
      types: ['execution.started'],
      maxDeliver: 2,
      retryDelayMs: 50,
      handle: async (event) => {
        await released;
        const id = event.message.eventId;
        const count = (attempts.get(id) ?? 0) + 1;
        attempts.set(id, count);
        if (id === hopeless.eventId || (id === flaky.eventId && count === 1)) {
          throw new Error('fails');
        }
      },
    });
    try {
      for (const event of [...fine, flaky, hopeless]) await bus.publish('execution.started', event);
      await bus.publish(
        'environment.deleted',
        create(EnvironmentDeletedSchema, {
          ...eventHeader(),
          environmentId: crypto.randomUUID(),
          reason: DeletionReason.EXPIRED,
        }),
      );
      // Under the subject of the release before, and not an event.
      await jetstream(nc).publish(`${prefix}.execution.started`, new Uint8Array([0xff, 0xff]));

      // The handler holds the first event: the rest wait, delivered or not.
      const waiting = canFilter ? 5 : 6;
      await eventually(async () => {
        const lag = await scrape();
        const pending = lag.get('assist_tee_consumer_pending_events');
        const ackPending = lag.get('assist_tee_consumer_ack_pending_events');
        return ackPending !== undefined && ackPending >= 1 && pending! + ackPending === waiting;
      });

      release();
      await eventually(
        () => attempts.get(hopeless.eventId) === 2 && attempts.get(flaky.eventId) === 2,
      );
      await caughtUp(bus.streamName, 'role-instance-1');
      const samples = await scrape();
      expect(Object.fromEntries(samples)).toEqual({
        'assist_tee_consumer_events_total:handled': 3,
        'assist_tee_consumer_events_total:retried': 2,
        // The hopeless event after its last delivery, and the bytes that are no event.
        'assist_tee_consumer_events_total:dropped': 2,
        ...(canFilter ? {} : { 'assist_tee_consumer_events_total:skipped': 1 }),
        assist_tee_consumer_redeliveries_total: 2,
        assist_tee_consumer_pending_events: 0,
        assist_tee_consumer_ack_pending_events: 0,
      });
      // The role, never the durable's per-instance name.
      expect(await registry.metrics()).not.toContain('role-instance-1');
    } finally {
      await consumer.stop();
      await nc.close();
    }
    // A stopped consumer has no lag to report; its counts stay.
    const stopped = await scrape();
    expect(stopped.has('assist_tee_consumer_pending_events')).toBe(false);
    expect(stopped.get('assist_tee_consumer_events_total:handled')).toBe(3);
  });

  it('leaves out a consumer whose info cannot be read, and keeps the scrape', async () => {
    const consumer = await bus.consume({
      durable: 'role',
      types: ['execution.started'],
      handle: () => undefined,
    });
    try {
      await eventually(
        async () => (await scrape()).get('assist_tee_consumer_pending_events') === 0,
      );
      // Deleted under it: the info request fails until the consumer creates it again.
      const nc = await rawConnection();
      try {
        await (await jetstreamManager(nc)).consumers.delete(bus.streamName, 'role');
      } finally {
        await nc.close();
      }
      const text = await registry.metrics();
      expect(text).toContain('# TYPE assist_tee_consumer_pending_events gauge');
      expect(text).not.toContain('assist_tee_consumer_pending_events{consumer="role"}');
    } finally {
      await consumer.stop();
    }
  });
});
