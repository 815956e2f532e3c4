import { create, toBinary } from '@bufbuild/protobuf';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import {
  DeletionReason,
  EnvironmentCreatedSchema,
  EnvironmentDeletedSchema,
  EnvironmentStatus,
  ExecutionFinishedSchema,
  ExecutionStartedSchema,
  ExecutionStatus,
  Runtime,
} from '@assist-tee/proto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { consumerFilter } from '../src/durable-consumer.js';
import { connectEventBus, eventHeader, type EventBus, type ReceivedEvent } from '../src/index.js';
import {
  caughtUp,
  deleteStream,
  eventually,
  NATS_URL,
  pause,
  rawConnection,
  recorder,
  testLogger,
  testPrefix,
} from './support.js';

describe('event bus', () => {
  let prefix: string;
  let bus: EventBus;
  const extraBuses: EventBus[] = [];

  const connect = (name = 'events-test') =>
    connectEventBus({ servers: NATS_URL, subjectPrefix: prefix, name, logger: testLogger() });

  beforeEach(async () => {
    prefix = testPrefix();
    bus = await connect();
  });
  afterEach(async () => {
    await Promise.all([bus, ...extraBuses.splice(0)].map((b) => b.close()));
    await deleteStream(bus.streamName);
  });

  const started = (executionId = crypto.randomUUID()) =>
    create(ExecutionStartedSchema, {
      ...eventHeader(),
      executionId,
      environmentId: crypto.randomUUID(),
      tenantId: 'acme',
    });

  it('creates a stream of its own per prefix, with the configured limits', async () => {
    expect(bus.streamName).toBe(`${prefix.toUpperCase()}_EVENTS`);
    await bus.ensureStream(); // again: idempotent
    const second = await connect('second');
    extraBuses.push(second);
    const nc = await rawConnection();
    try {
      const info = await (await jetstreamManager(nc)).streams.info(bus.streamName);
      expect(info.config).toMatchObject({
        subjects: [`${prefix}.>`],
        storage: 'file',
        duplicate_window: 2 * 60 * 1e9,
        max_age: 7 * 24 * 60 * 60 * 1e9,
      });
    } finally {
      await nc.close();
    }
    await bus.ping();
  });

  it('delivers a published event, decoded and typed, to a durable consumer', async () => {
    const { items: received, handle } = recorder((event) => event);
    const consumer = await bus.consume({
      durable: 'roundtrip',
      types: ['environment.created'],
      handle,
    });
    const created = create(EnvironmentCreatedSchema, {
      ...eventHeader(),
      environment: {
        id: crypto.randomUUID(),
        tenantId: 'acme',
        status: EnvironmentStatus.READY,
        runtime: Runtime.DENO,
        mainModule: 'main.ts',
        modulePaths: ['main.ts'],
        modulesSizeBytes: 12n,
        labels: { a: 'b' },
      },
    });
    await bus.publish('execution.started', started()); // another type: not for this consumer
    await bus.publish('environment.created', created);
    await eventually(() => received.length === 1);
    await caughtUp(bus.streamName, 'roundtrip');
    await consumer.stop();

    expect(received).toHaveLength(1);
    const [event] = received;
    expect(event).toMatchObject({
      type: 'environment.created',
      subject: `${prefix}.events.acme.environment.created`,
      streamSequence: 2,
      redelivered: false,
    });
    if (event?.type !== 'environment.created') throw new Error('wrong type');
    // The discriminated union narrows the message to EnvironmentCreated.
    expect(event.message.environment?.modulesSizeBytes).toBe(12n);
    expect(event.message).toEqual(created);
  });

  it('receives only the types asked for, several at once', async () => {
    const { items: received, handle } = recorder((event) => event.type);
    const consumer = await bus.consume({
      durable: 'executions',
      types: ['execution.started', 'execution.finished'],
      handle,
    });
    await bus.publish('execution.started', started());
    await bus.publish(
      'environment.deleted',
      create(EnvironmentDeletedSchema, {
        ...eventHeader(),
        environmentId: crypto.randomUUID(),
        reason: DeletionReason.EXPIRED,
      }),
    );
    await bus.publish(
      'execution.finished',
      create(ExecutionFinishedSchema, {
        ...eventHeader(),
        execution: { id: crypto.randomUUID(), status: ExecutionStatus.SUCCEEDED },
      }),
    );
    await eventually(() => received.length === 2);
    await caughtUp(bus.streamName, 'executions');
    await consumer.stop();
    expect(received).toEqual(['execution.started', 'execution.finished']);
  });

  it('stores an event published twice with the same id once', async () => {
    const [event, other] = [started(), started()];
    await bus.publish('execution.started', event);
    await bus.publish('execution.started', event);
    await bus.publish('execution.started', other);

    const { items: received, handle } = recorder((event) => event.message.eventId);
    const consumer = await bus.consume({ durable: 'dedup', types: ['execution.started'], handle });
    await eventually(() => received.length === 2);
    await caughtUp(bus.streamName, 'dedup');
    await consumer.stop();
    expect(received).toEqual([event.eventId, other.eventId]);
  });

  it('redelivers an event whose handler threw, then gives up after maxDeliver', async () => {
    const attempts = new Map<string, ReceivedEvent[]>();
    const flaky = started();
    const hopeless = started();
    const after = started();
    const consumer = await bus.consume({
      durable: 'retries',
      types: ['execution.started'],
      maxDeliver: 3,
      retryDelayMs: 50,
      handle: async (event) => {
        await pause(1); // some work before failing, as a real handler would
        const id = event.message.eventId;
        attempts.set(id, [...(attempts.get(id) ?? []), event]);
        if (id === hopeless.eventId) throw new Error('always fails');
        if (id === flaky.eventId && attempts.get(id)!.length === 1) throw new Error('fails once');
      },
    });
    for (const event of [flaky, hopeless, after]) await bus.publish('execution.started', event);
    await eventually(
      () => attempts.get(hopeless.eventId)?.length === 3 && attempts.has(after.eventId),
    );
    await caughtUp(bus.streamName, 'retries');
    await consumer.stop();

    expect(attempts.get(flaky.eventId)?.map((e) => e.redelivered)).toEqual([false, true]);
    expect(attempts.get(hopeless.eventId)).toHaveLength(3);
    expect(attempts.get(after.eventId)).toHaveLength(1);
  });

  it('retries an event in place through transient failures, past maxDeliver', async () => {
    const outage = new Error('the database is restarting');
    let calls = 0;
    const handled: ReceivedEvent[] = [];
    const consumer = await bus.consume({
      durable: 'transient',
      types: ['execution.started'],
      maxDeliver: 2,
      retryDelayMs: 20,
      isTransient: (error) => error === outage,
      handle: (event) => {
        calls += 1;
        if (calls <= 5) throw outage;
        handled.push(event);
      },
    });
    await bus.publish('execution.started', started());
    await eventually(() => handled.length === 1);
    await consumer.stop();
    expect(calls).toBe(6);
    // Still the first delivery: the outage used none of the event's deliveries.
    expect(handled[0]!.redelivered).toBe(false);
  });

  it('drops an undecodable message and keeps consuming', async () => {
    const { items: received, handle } = recorder((event) => event.message.eventId);
    const consumer = await bus.consume({ durable: 'robust', types: ['execution.started'], handle });
    const nc = await rawConnection();
    try {
      const js = jetstream(nc);
      await js.publish(`${prefix}.execution.started`, new Uint8Array([0xff, 0xff, 0xff, 0xff]));
      // Valid protobuf but no event id: not an event either.
      await js.publish(
        `${prefix}.execution.started`,
        toBinary(ExecutionStartedSchema, create(ExecutionStartedSchema)),
      );
    } finally {
      await nc.close();
    }
    const good = started();
    await bus.publish('execution.started', good);
    await eventually(() => received.length === 1);
    await caughtUp(bus.streamName, 'robust');
    await consumer.stop();
    expect(received).toEqual([good.eventId]);
  });

  it('shares a durable between consumers: each event handled once', async () => {
    const other = await connect('other-process');
    extraBuses.push(other);
    const handledBy = new Map<string, string[]>();
    const handler = (who: string) => async (event: ReceivedEvent) => {
      handledBy.set(event.message.eventId, [...(handledBy.get(event.message.eventId) ?? []), who]);
      await pause(10);
    };
    const a = await bus.consume({
      durable: 'shared',
      types: ['execution.started'],
      handle: handler('a'),
    });
    const b = await other.consume({
      durable: 'shared',
      types: ['execution.started'],
      handle: handler('b'),
    });
    const events = Array.from({ length: 40 }, () => started());
    for (const event of events) await bus.publish('execution.started', event);
    await eventually(() => handledBy.size === events.length, 10_000);
    await caughtUp(bus.streamName, 'shared');
    await Promise.all([a.stop(), b.stop()]);

    expect([...handledBy.values()].every((who) => who.length === 1)).toBe(true);
    const counts = { a: 0, b: 0 };
    for (const [who] of handledBy.values()) counts[who as 'a' | 'b']++;
    expect(counts.a).toBeGreaterThan(0);
    expect(counts.b).toBeGreaterThan(0);
  });

  it('starts a "new" durable after what is already stored, and removes it once inactive', async () => {
    const [before, after] = [crypto.randomUUID(), crypto.randomUUID()];
    await bus.publish('execution.started', started(before));
    const { items: received, handle } = recorder((event) =>
      event.type === 'execution.started' ? event.message.executionId : '',
    );
    const consumer = await bus.consume({
      durable: 'per-instance',
      types: ['execution.started'],
      deliver: 'new',
      inactiveThresholdMs: 1_000,
      handle,
    });
    await bus.publish('execution.started', started(after));
    await eventually(() => received.length === 1);
    await caughtUp(bus.streamName, 'per-instance');
    await consumer.stop();
    expect(received).toEqual([after]);

    const nc = await rawConnection();
    try {
      const jsm = await jetstreamManager(nc);
      const exists = () =>
        jsm.consumers.info(bus.streamName, 'per-instance').then(
          () => true,
          () => false,
        );
      // Nobody consumes it now: the server removes it after the threshold.
      await eventually(async () => !(await exists()), 10_000);
    } finally {
      await nc.close();
    }
  });

  it('brings an existing durable to the latest config in place, and stops consumers on close', async () => {
    const nc = await rawConnection();
    const jsm = await jetstreamManager(nc);
    const info = async () => {
      const { config, created } = await jsm.consumers.info(bus.streamName, 'evolving');
      return {
        created,
        maxDeliver: config.max_deliver,
        filter: config.filter_subjects ?? config.filter_subject,
      };
    };
    try {
      // The durable as the release before tenants were in subjects left it.
      await jsm.consumers.add(bus.streamName, {
        durable_name: 'evolving',
        ack_policy: AckPolicy.Explicit,
        max_deliver: 5,
        filter_subject: `${prefix}.execution.started`,
      });
      const before = await info();
      const noop = async () => {};
      const consumer = await bus.consume({
        durable: 'evolving',
        types: ['execution.finished'],
        maxDeliver: 9,
        handle: noop,
      });
      const { filter_subject, filter_subjects } = consumerFilter(
        prefix,
        ['execution.finished'],
        nc.info!.version,
      );
      // The same consumer (its position kept), not a new one beside it.
      expect(await info()).toEqual({
        created: before.created,
        maxDeliver: 9,
        filter: filter_subjects ?? filter_subject,
      });
      expect(await jsm.consumers.list(bus.streamName).next()).toHaveLength(1);
      // close() stops the consumer itself before draining.
      await bus.close();
      await consumer.stop();
    } finally {
      await nc.close();
    }
  });

  it('consumes once an event stored under the subject of the release before, with no headers', async () => {
    const nc = await rawConnection();
    const legacy = started();
    try {
      // As the previous release published it: no tenant in the subject, no headers.
      await jetstream(nc).publish(
        `${prefix}.execution.started`,
        toBinary(ExecutionStartedSchema, legacy),
        { msgID: legacy.eventId },
      );
    } finally {
      await nc.close();
    }
    const current = started();
    await bus.publish('execution.started', current);
    const { items: received, handle } = recorder((event) => [event.subject, event.message.eventId]);
    const consumer = await bus.consume({
      durable: 'upgraded',
      types: ['execution.started'],
      handle,
    });
    await eventually(() => received.length === 2);
    await caughtUp(bus.streamName, 'upgraded');
    await consumer.stop();
    expect(received).toEqual([
      [`${prefix}.execution.started`, legacy.eventId],
      [`${prefix}.events.acme.execution.started`, current.eventId],
    ]);
  });

  it('publishes CloudEvents headers, with ce-id as Nats-Msg-Id, encoded or not', async () => {
    const direct = started();
    const relayed = create(ExecutionFinishedSchema, {
      ...eventHeader(),
      execution: { id: crypto.randomUUID(), tenantId: 'other', status: ExecutionStatus.SUCCEEDED },
    });
    await bus.publish('execution.started', direct);
    await bus.publishEncoded('execution.finished', toBinary(ExecutionFinishedSchema, relayed));
    // Again: the same id is stored once, headers or not.
    await bus.publishEncoded('execution.finished', toBinary(ExecutionFinishedSchema, relayed));

    const nc = await rawConnection();
    try {
      expect((await (await jetstreamManager(nc)).streams.info(bus.streamName)).state.messages).toBe(
        2,
      );
      const consumer = await jetstream(nc).consumers.get(bus.streamName);
      const messages = await consumer.fetch({ max_messages: 2 });
      const seen = [];
      for await (const msg of messages) {
        seen.push({
          subject: msg.subject,
          msgId: msg.headers?.get('Nats-Msg-Id'),
          id: msg.headers?.get('ce-id'),
          type: msg.headers?.get('ce-type'),
          tenant: msg.headers?.get('ce-tenantid'),
          contentType: msg.headers?.get('content-type'),
        });
      }
      expect(seen).toEqual([
        {
          subject: `${prefix}.events.acme.execution.started`,
          msgId: direct.eventId,
          id: direct.eventId,
          type: 'assist_tee.v1.execution.started',
          tenant: 'acme',
          contentType: 'application/protobuf',
        },
        {
          subject: `${prefix}.events.other.execution.finished`,
          msgId: relayed.eventId,
          id: relayed.eventId,
          type: 'assist_tee.v1.execution.finished',
          tenant: 'other',
          contentType: 'application/protobuf',
        },
      ]);
    } finally {
      await nc.close();
    }
  });
});

describe('event bus connection', () => {
  it('names the servers when NATS is unreachable', async () => {
    await expect(
      connectEventBus({
        servers: 'nats://127.0.0.1:1',
        subjectPrefix: testPrefix(),
        name: 'unreachable',
        logger: testLogger(),
      }),
    ).rejects.toThrow(/cannot connect to NATS at nats:\/\/127\.0\.0\.1:1/);
  });

  it('rejects a prefix that is not plain subject tokens', async () => {
    for (const subjectPrefix of ['', 'tee.*', 'tee.>', 'a b', 'tee.']) {
      await expect(
        connectEventBus({ servers: NATS_URL, subjectPrefix, name: 'bad', logger: testLogger() }),
      ).rejects.toThrow(/invalid event subject prefix/);
    }
  });
});
