import { create, toJson } from '@bufbuild/protobuf';
import { TimestampSchema } from '@bufbuild/protobuf/wkt';
import {
  type Database,
  ExecutionOutboxEntity,
  executionSchema,
  openDatabase,
} from '@assist-tee/db';
import { connectEventBus, type EventBus, eventHeader } from '@assist-tee/events';
import { createLogger } from '@assist-tee/logger';
import { ExecutionStartedSchema } from '@assist-tee/proto';
import {
  collectEvents,
  createTestDatabase,
  type PrivateServer,
  startPrivateNatsServer,
  storedHeaders,
  type TestDatabase,
  testSubjectPrefix,
} from '@assist-tee/testing';
import { activeTraceId, inSpan, registerTracing } from '@assist-tee/tracing';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Outbox, outboxRow, startOutbox } from '../src/index.js';

const logger = createLogger({ level: process.env.TEE_LOG_LEVEL ?? 'silent' });
const started = (executionId: string) =>
  create(ExecutionStartedSchema, {
    ...eventHeader(),
    executionId,
    environmentId: executionId,
    tenantId: 'acme',
  });

// Real Postgres, and a NATS server of this test's own so it can be stopped and started.
describe('the transactional outbox', () => {
  let database: TestDatabase;
  let nats: PrivateServer;
  let db: Database;
  let bus: EventBus;
  let outbox: Outbox;
  const prefix = testSubjectPrefix();

  beforeAll(async () => {
    database = await createTestDatabase();
    nats = await startPrivateNatsServer();
    db = await openDatabase({
      url: database.url,
      ...executionSchema,
      logger,
    });
    bus = await connectEventBus({ servers: nats.url, subjectPrefix: prefix, name: 'test', logger });
    outbox = startOutbox({ db, entity: ExecutionOutboxEntity, bus, logger, retryMs: 200 });
  });
  afterAll(async () => {
    await outbox?.close();
    await bus?.close();
    await db?.close();
    await nats?.destroy();
    await database?.drop();
  });

  const pending = () => db.em().count(ExecutionOutboxEntity, { publishedAt: null });

  it('writes nothing when the transaction that carries the event rolls back', async () => {
    const event = started('00000000-0000-4000-8000-000000000001');
    await expect(
      db.em().transactional(async (em) => {
        outbox.add(em, 'execution.started', event);
        await em.flush();
        throw new Error('the state change failed');
      }),
    ).rejects.toThrow('the state change failed');
    expect(await db.em().count(ExecutionOutboxEntity, { eventId: event.eventId })).toBe(0);
  });

  it('publishes with the event id as Nats-Msg-Id, and keeps events while NATS is down', async () => {
    const events = await collectEvents(nats.url, prefix);
    try {
      const first = started('00000000-0000-4000-8000-000000000002');
      await outbox.flushWith(db.em(), 'execution.started', first);
      const [relayed] = await events.waitFor((seen) =>
        seen.some((e) => e.message.eventId === first.eventId),
      );
      // From the stored bytes alone: the tenant's subject and the CloudEvents headers.
      expect(relayed!.subject).toBe(`${prefix}.events.acme.execution.started`);
      const headers = await storedHeaders(nats.url, bus.streamName, relayed!.streamSequence);
      expect(headers?.get('Nats-Msg-Id')).toBe(first.eventId);
      expect(headers?.get('ce-id')).toBe(first.eventId);
      expect(headers?.get('ce-type')).toBe('assist_tee.v1.execution.started');
      expect(headers?.get('ce-time')).toBe(toJson(TimestampSchema, first.time!));

      await nats.stop();
      const whileDown = [3, 4, 5].map((n) => started(`00000000-0000-4000-8000-00000000000${n}`));
      for (const event of whileDown) {
        // The state change (here: only the event) commits; nothing waits for NATS.
        await outbox.flushWith(db.em(), 'execution.started', event);
      }
      expect(await pending()).toBe(3);

      await nats.start();
      expect(await outbox.drained(30_000)).toBe(true);
      const seen = await events.waitFor(
        (all) => whileDown.every((event) => all.some((e) => e.message.eventId === event.eventId)),
        30_000,
      );
      // Exactly once per event id, in the order they were written.
      const ids = seen.map((event) => event.message.eventId);
      expect(ids).toEqual([first.eventId, ...whileDown.map((event) => event.eventId)]);
      // Publishing an event again is dropped by JetStream's duplicate window. The stream
      // delivers in order: a second copy would arrive before the event published next.
      await bus.publish('execution.started', first);
      const next = started('00000000-0000-4000-8000-000000000006');
      await bus.publish('execution.started', next);
      await events.waitFor((all) => all.some((e) => e.message.eventId === next.eventId));
      expect(events.events.map((event) => event.message.eventId)).toEqual([...ids, next.eventId]);
      // The failed publishes left nothing stuck: a committed event is published and marked
      // again without the relay.
      const after = started('00000000-0000-4000-8000-000000000011');
      await outbox.flushWith(db.em(), 'execution.started', after);
      await vi.waitFor(async () => expect(await pending()).toBe(0), { timeout: 5_000 });
    } finally {
      await events.stop();
    }
  });

  it('sends the trace of the change with its event, also when the relay publishes it later', async () => {
    const tracing = registerTracing('outbox-test', []);
    const events = await collectEvents(nats.url, prefix);
    try {
      const event = started('00000000-0000-4000-8000-000000000021');
      // Written inside a span, and published by the relay (not at once): from the stored row.
      const traceId = await inSpan('change', {}, async () => {
        const em = db.em();
        outbox.add(em, 'execution.started', event);
        await em.flush();
        return activeTraceId();
      });
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      const stored = await db.em().findOneOrFail(ExecutionOutboxEntity, event.eventId);
      expect(stored.traceparent).toContain(traceId);
      outbox.publishPending();
      const relayed = (
        await events.waitFor((seen) => seen.some((e) => e.message.eventId === event.eventId))
      ).find((e) => e.message.eventId === event.eventId);
      const headers = await storedHeaders(nats.url, bus.streamName, relayed!.streamSequence);
      expect(headers?.get('traceparent')).toBe(stored.traceparent);
    } finally {
      await events.stop();
      await tracing.shutdown();
    }
  });

  it('publishes committed events at once, without waiting for a relay pass', async () => {
    // A relay that, after its first pass, looks again only in a minute.
    await outbox.close();
    outbox = startOutbox({ db, entity: ExecutionOutboxEntity, bus, logger, retryMs: 60_000 });
    await vi.waitFor(async () => expect(await pending()).toBe(0), { timeout: 10_000 });
    const events = await collectEvents(nats.url, prefix);
    try {
      const committed = [9, 10].map((n) =>
        started(`00000000-0000-4000-8000-${String(n).padStart(12, '0')}`),
      );
      const em = db.em();
      for (const event of committed) outbox.add(em, 'execution.started', event);
      await em.flush();
      outbox.publishCommitted(committed.map((message) => ({ type: 'execution.started', message })));
      const seen = await events.waitFor(
        (all) => committed.every((event) => all.some((e) => e.message.eventId === event.eventId)),
        10_000,
      );
      const ids = committed.map((event) => event.eventId);
      // In the order handed over.
      expect(seen.map((event) => event.message.eventId).filter((id) => ids.includes(id))).toEqual(
        ids,
      );
      // And marked: the relay has nothing left to do.
      await vi.waitFor(async () => expect(await pending()).toBe(0), { timeout: 10_000 });
    } finally {
      await events.stop();
    }
  });

  it('publishes what is still pending when it is closed', async () => {
    await outbox.close();
    const events = await collectEvents(nats.url, prefix);
    try {
      // An event the closed relay left: the next relay's first pass publishes it and then, with
      // nothing asked of it, does not look again for a minute.
      const left = started('00000000-0000-4000-8000-000000000007');
      const leftEm = db.em();
      outbox.add(leftEm, 'execution.started', left);
      await leftEm.flush();
      outbox = startOutbox({ db, entity: ExecutionOutboxEntity, bus, logger, retryMs: 60_000 });
      await vi.waitFor(async () => expect(await pending()).toBe(0), { timeout: 10_000 });

      const last = started('00000000-0000-4000-8000-000000000008');
      const em = db.em();
      outbox.add(em, 'execution.started', last);
      await em.flush();
      expect(await pending()).toBe(1);

      await outbox.close();
      expect(await pending()).toBe(0);
      await events.waitFor((seen) => seen.some((e) => e.message.eventId === last.eventId));
    } finally {
      await events.stop();
    }
  });

  it('reports its backlog, the age of its oldest event, and what it published, as metrics', async () => {
    await outbox.close();
    const registry = new Registry();
    /** The scrape's samples of the execution outbox, by name (all with outbox="execution"). */
    const scrape = async () => {
      const samples = new Map<string, number>();
      for (const line of (await registry.metrics()).split('\n')) {
        const match = /^(\w+)\{outbox="execution"(?:,type="([\w.]+)")?\} (\S+)$/.exec(line);
        if (match) samples.set(match[2] ? `${match[1]}:${match[2]}` : match[1]!, Number(match[3]));
      }
      return samples;
    };
    const em = db.em();
    const old = started('00000000-0000-4000-8000-000000000012');
    em.create(ExecutionOutboxEntity, {
      ...outboxRow('execution.started', old),
      createdAt: new Date(Date.now() - 30_000),
    });
    em.create(
      ExecutionOutboxEntity,
      outboxRow('execution.started', started('00000000-0000-4000-8000-000000000013')),
    );
    await em.flush();
    // Locked, the rows stay unpublished: the relay skips what another transaction holds.
    await db.em().transactional(async (tx) => {
      await tx.execute(
        'select 1 from "execution"."outbox" where "published_at" is null for update',
      );
      outbox = startOutbox({
        db,
        entity: ExecutionOutboxEntity,
        bus,
        logger,
        retryMs: 60_000,
        registry,
      });
      const held = await scrape();
      expect(held.get('assist_tee_outbox_backlog_events')).toBe(2);
      expect(held.get('assist_tee_outbox_oldest_unrelayed_age_seconds')).toBeGreaterThanOrEqual(30);
      expect(held.get('assist_tee_outbox_oldest_unrelayed_age_seconds')).toBeLessThan(60);
    });
    outbox.publishPending();
    expect(await outbox.drained(10_000)).toBe(true);
    expect(await scrape()).toEqual(
      new Map([
        ['assist_tee_events_published_total:execution.started', 2],
        ['assist_tee_outbox_backlog_events', 0],
        ['assist_tee_outbox_oldest_unrelayed_age_seconds', 0],
      ]),
    );

    // NATS down: the publish fails, and is counted; the relay publishes it once NATS is back.
    await nats.stop();
    try {
      await outbox.flushWith(db.em(), 'execution.started', started(crypto.randomUUID()));
      await vi.waitFor(
        async () =>
          expect((await scrape()).get('assist_tee_outbox_publish_failures_total')).toBe(1),
        { timeout: 20_000, interval: 200 },
      );
    } finally {
      await nats.start();
    }
    expect(await outbox.drained(30_000)).toBe(true);
    const after = await scrape();
    expect(after.get('assist_tee_events_published_total:execution.started')).toBe(3);
    expect(after.get('assist_tee_outbox_backlog_events')).toBe(0);
  });
});
