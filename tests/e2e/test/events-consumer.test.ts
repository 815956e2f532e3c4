import { createRegistry, fromBinary, fromJson, toJson } from '@bufbuild/protobuf';
import { type Timestamp, TimestampSchema, ValueSchema } from '@bufbuild/protobuf/wkt';
import { EnvironmentStatus, ExecutionStatus, Runtime } from '@assist-tee/client';
import { file_assist_tee_v1_events } from '@assist-tee/proto';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { pendingEvents, sumExample, useTestStack } from '../src/index.js';

// An outside consumer, as a platform would write one: plain @nats-io/jetstream and the generated
// schemas, picked by the CloudEvents headers. Nothing of @assist-tee/events.

interface Received {
  subject: string;
  headers: Record<string, string>;
  data: Uint8Array;
}

/** An ordered consumer on the stack's stream, from its start, filtered to `filter`. */
async function follow(nc: NatsConnection, stream: string, filter: string) {
  const received: Received[] = [];
  const consumer = await jetstream(nc).consumers.get(stream, { filter_subjects: filter });
  const messages = await consumer.consume();
  const loop = (async () => {
    for await (const msg of messages) {
      const headers = msg.headers;
      received.push({
        subject: msg.subject,
        headers: Object.fromEntries([...(headers?.keys() ?? [])].map((k) => [k, headers!.get(k)])),
        data: msg.data,
      });
    }
  })();
  return {
    received,
    /** Nothing left in the stream for this filter: every message it will see is in hand. */
    caughtUp: async () => (await consumer.info(false)).num_pending === 0,
    stop: async () => {
      await messages.close();
      await loop;
    },
  };
}

// The schema for a CloudEvent, by its ce-dataschema (type.googleapis.com/<full name>).
const registry = createRegistry(file_assist_tee_v1_events);

function decode(event: Received) {
  const typeName = event.headers['ce-dataschema']?.replace(/^type\.googleapis\.com\//, '') ?? '';
  const schema = registry.getMessage(typeName);
  if (schema === undefined) throw new Error(`no schema for ${event.headers['ce-dataschema']}`);
  const message = fromBinary(schema, event.data) as unknown as {
    eventId: string;
    time?: Timestamp;
    tenantId?: string;
    environment?: { id: string; tenantId: string };
    execution?: { id: string; tenantId: string; status: ExecutionStatus };
    environmentId?: string;
    executionId?: string;
  };
  return { typeName, message };
}

describe('events, as a consumer outside the project sees them', () => {
  const tee = useTestStack();
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connect({ servers: tee.stack.config.nats.servers.split(',') });
  });
  afterAll(async () => {
    await nc?.close();
  });

  it('every event carries the CloudEvents headers, on its tenant’s subject only', async () => {
    const prefix = tee.stack.config.nats.subjectPrefix;
    const stream = tee.stack.process.infrastructure.bus.streamName;
    const alpha = await tee.clientOf('alpha');
    const beta = await tee.clientOf('beta');
    const followers = {
      alpha: await follow(nc, stream, `${prefix}.events.alpha.>`),
      beta: await follow(nc, stream, `${prefix}.events.beta.>`),
    };
    try {
      // beta: one environment made and deleted, before and while alpha works.
      const { environment: betaEnv } = await beta.environments.createEnvironment({
        ...sumExample,
        runtime: Runtime.DENO,
      });
      // alpha: a create, an execute, a failed setup and a delete.
      const { environment } = await alpha.environments.createEnvironment({
        ...sumExample,
        runtime: Runtime.DENO,
      });
      expect(environment!.status).toBe(EnvironmentStatus.READY);
      const { execution } = await alpha.executions.execute({
        environmentId: environment!.id,
        data: fromJson(ValueSchema, { a: 2, b: 40 }),
      });
      expect(execution!.status).toBe(ExecutionStatus.SUCCEEDED);
      const { environment: failed } = await alpha.environments.createEnvironment({
        ...sumExample,
        runtime: Runtime.DENO,
        dependencies: { npm: ['assist-tee-no-such-package-4c1d9e@1.0.0'] },
      });
      expect(failed!.status).toBe(EnvironmentStatus.FAILED);
      await alpha.environments.deleteEnvironment({ id: environment!.id });
      await beta.environments.deleteEnvironment({ id: betaEnv!.id });

      await vi.waitFor(
        async () => {
          expect(await pendingEvents(tee.stack.config.databaseUrl)).toBe(0);
          expect(await followers.alpha.caughtUp()).toBe(true);
          expect(await followers.beta.caughtUp()).toBe(true);
          expect(followers.alpha.received).toHaveLength(5);
        },
        { timeout: 30_000, interval: 200 },
      );

      const seen = followers.alpha.received.map((event) => {
        const { typeName, message } = decode(event);
        const type = event.headers['ce-type']!.replace(/^assist_tee\.v1\./, '');
        // The subject, ce-type and ce-dataschema agree; ce-id is the event id and the dedup key.
        expect(event.subject).toBe(`${prefix}.events.alpha.${type}`);
        expect(event.headers).toMatchObject({
          'ce-specversion': '1.0',
          'ce-id': message.eventId,
          'Nats-Msg-Id': message.eventId,
          'ce-time': toJson(TimestampSchema, message.time!),
          'ce-tenantid': 'alpha',
          'ce-datacontenttype': 'application/protobuf',
          'content-type': 'application/protobuf',
          'ce-source': type.startsWith('environment.')
            ? '/assist-tee/environments'
            : '/assist-tee/execution',
        });
        const tenant =
          message.tenantId ?? message.environment?.tenantId ?? message.execution?.tenantId;
        const id =
          message.environment?.id ??
          message.execution?.id ??
          message.executionId ??
          message.environmentId;
        expect([tenant, event.headers['ce-subject']]).toEqual(['alpha', id]);
        return [type, typeName, id];
      });
      // Each outbox keeps its own order; the two services' events interleave as they will.
      expect(seen.sort()).toEqual([
        ['environment.created', 'assist_tee.v1.EnvironmentCreated', environment!.id],
        ['environment.deleted', 'assist_tee.v1.EnvironmentDeleted', environment!.id],
        ['environment.failed', 'assist_tee.v1.EnvironmentFailed', failed!.id],
        ['execution.finished', 'assist_tee.v1.ExecutionFinished', execution!.id],
        ['execution.started', 'assist_tee.v1.ExecutionStarted', execution!.id],
      ]);

      // beta's consumer saw beta's two events and nothing of alpha's.
      expect(
        followers.beta.received.map((event) => [
          event.headers['ce-type'],
          event.headers['ce-tenantid'],
          event.headers['ce-subject'],
        ]),
      ).toEqual([
        ['assist_tee.v1.environment.created', 'beta', betaEnv!.id],
        ['assist_tee.v1.environment.deleted', 'beta', betaEnv!.id],
      ]);
    } finally {
      await Promise.all([followers.alpha.stop(), followers.beta.stop()]);
    }
  });
});
