import { create, toBinary } from '@bufbuild/protobuf';
import {
  EnvironmentCreatedSchema,
  ExecutionFinishedSchema,
  ExecutionStartedSchema,
  SessionCreatedSchema,
  SessionEndedSchema,
  SessionEndReason,
  SessionStatus,
} from '@assist-tee/proto';
import { describe, expect, it } from 'vitest';
import { cloudEventHeaders } from '../src/cloud-events.js';
import { consumerFilter } from '../src/durable-consumer.js';
import { eventTypeOf } from '../src/event-subjects.js';
import {
  decodeEvent,
  EventDecodeError,
  eventHeader,
  eventStreamName,
  eventSubject,
} from '../src/index.js';

describe('event names', () => {
  it('derives one stream name per prefix', () => {
    expect(eventStreamName('tee')).toBe('TEE_EVENTS');
    expect(eventStreamName('t_0a1b2c3d')).toBe('T_0A1B2C3D_EVENTS');
    expect(eventStreamName('tee.staging-2')).toBe('TEE_STAGING-2_EVENTS');
  });

  it('puts the tenant in the subject, "_" for events without one', () => {
    expect(eventSubject('tee', 'acme', 'execution.finished')).toBe(
      'tee.events.acme.execution.finished',
    );
    expect(eventSubject('tee.staging', '', 'environment.created')).toBe(
      'tee.staging.events._.environment.created',
    );
    expect(() => eventSubject('tee', 'a.b', 'execution.started')).toThrow(/subject token/);
  });

  it('gives each new event a uuid v4 and the current time', () => {
    const before = Date.now();
    const { eventId, time } = eventHeader();
    expect(eventId).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    const ms = Number(time.seconds) * 1000 + time.nanos / 1e6;
    expect(ms).toBeGreaterThanOrEqual(before - 1);
    expect(ms).toBeLessThanOrEqual(Date.now() + 1);
    expect(eventHeader().eventId).not.toBe(eventId);
  });
});

describe('decodeEvent', () => {
  const message = create(ExecutionStartedSchema, {
    ...eventHeader(),
    executionId: 'x',
    tenantId: 'acme',
  });
  const bytes = toBinary(ExecutionStartedSchema, message);

  it('decodes by the type its subject names, with or without the tenant in it', () => {
    for (const subject of ['tee.events.acme.execution.started', 'tee.execution.started']) {
      const event = decodeEvent('tee', subject, bytes);
      expect(event.type).toBe('execution.started');
      expect(event.message).toEqual(message);
    }
    const untenanted = create(ExecutionStartedSchema, { ...eventHeader() });
    const event = decodeEvent(
      'a.b',
      'a.b.events._.execution.started',
      toBinary(ExecutionStartedSchema, untenanted),
    );
    expect(event.message).toEqual(untenanted);
  });

  it('reads the type from the subject alone, for a consumer to skip what it does not want', () => {
    expect(eventTypeOf('tee', 'tee.events.acme.execution.finished')).toBe('execution.finished');
    expect(eventTypeOf('tee', 'tee.session.ended')).toBe('session.ended');
    for (const subject of ['tee.events.acme.nope', 'other.execution.started', 'tee.events']) {
      expect(eventTypeOf('tee', subject), subject).toBeUndefined();
    }
  });

  it('refuses unknown subjects, other prefixes and tenants, garbage, and no event id', () => {
    for (const subject of [
      'tee.execution.exploded',
      'other.execution.started',
      'tee.toString',
      'tee.events.acme.toString',
      'tee.events.execution.started',
      'tee.events.*.execution.started',
      'tee.acme.execution.started',
    ]) {
      expect(() => decodeEvent('tee', subject, bytes), subject).toThrow(/no event type/);
    }
    expect(() => decodeEvent('tee', 'tee.events.other.execution.started', bytes)).toThrow(
      /another tenant's/,
    );
    expect(() => decodeEvent('tee', 'tee.execution.started', new Uint8Array([0xff, 0xff]))).toThrow(
      EventDecodeError,
    );
    expect(() => decodeEvent('tee', 'tee.execution.started', new Uint8Array())).toThrow(
      /no event id/,
    );
  });
});

describe('CloudEvents headers', () => {
  it('carries every attribute of the binary content mode, from the message', () => {
    const finished = create(ExecutionFinishedSchema, {
      eventId: 'e-1',
      time: { seconds: 1_700_000_000n, nanos: 123_456_000 },
      execution: { id: 'x-1', environmentId: 'env-1', tenantId: 'acme' },
    });
    const headers = cloudEventHeaders({ type: 'execution.finished', message: finished });
    expect(Object.fromEntries([...headers.keys()].map((key) => [key, headers.get(key)]))).toEqual({
      'ce-specversion': '1.0',
      'ce-id': 'e-1',
      'ce-type': 'assist_tee.v1.execution.finished',
      'ce-source': '/assist-tee/execution',
      'ce-subject': 'x-1',
      'ce-time': '2023-11-14T22:13:20.123456Z',
      'ce-datacontenttype': 'application/protobuf',
      'ce-dataschema': 'type.googleapis.com/assist_tee.v1.ExecutionFinished',
      'ce-tenantid': 'acme',
      'content-type': 'application/protobuf',
    });
  });

  it('names the execution service, the session and its tenant for session events', () => {
    const session = {
      id: 's-1',
      environmentId: 'env-1',
      tenantId: 'acme',
      status: SessionStatus.ENDED,
      endReason: SessionEndReason.IDLE_TIMEOUT,
    };
    const created = create(SessionCreatedSchema, { eventId: 'e-1', session });
    const ended = create(SessionEndedSchema, { eventId: 'e-2', session });
    for (const event of [
      { type: 'session.created', message: created },
      { type: 'session.ended', message: ended },
    ] as const) {
      const headers = cloudEventHeaders(event);
      expect(headers.get('ce-type')).toBe(`assist_tee.v1.${event.type}`);
      expect(headers.get('ce-source')).toBe('/assist-tee/execution');
      expect(headers.get('ce-subject')).toBe('s-1');
      expect(headers.get('ce-tenantid')).toBe('acme');
    }
    expect(cloudEventHeaders({ type: 'session.ended', message: ended }).get('ce-dataschema')).toBe(
      'type.googleapis.com/assist_tee.v1.SessionEnded',
    );
    const encoded = toBinary(SessionEndedSchema, ended);
    expect(decodeEvent('tee', 'tee.events.acme.session.ended', encoded).message).toEqual(ended);
  });

  it('names the environments service as the source of environment events', () => {
    const created = create(EnvironmentCreatedSchema, {
      eventId: 'id with "spaces" 100% €',
      environment: { id: 'env-1' },
    });
    const headers = cloudEventHeaders({ type: 'environment.created', message: created });
    expect(headers.get('ce-source')).toBe('/assist-tee/environments');
    expect(headers.get('ce-dataschema')).toBe(
      'type.googleapis.com/assist_tee.v1.EnvironmentCreated',
    );
    // Values are percent-encoded as the binding asks; empty attributes are left out.
    expect(headers.get('ce-id')).toBe('id%20with%20%22spaces%22%20100%25%20%E2%82%AC');
    expect(headers.has('ce-tenantid')).toBe(false);
    expect(headers.has('ce-time')).toBe(false);
  });
});

describe('consumer filters', () => {
  it('name both subject forms of each type on nats-server 2.10 and later', () => {
    expect(consumerFilter('tee', ['execution.finished'], '2.10.4')).toEqual({
      filter_subject: undefined,
      filter_subjects: ['tee.events.*.execution.finished', 'tee.execution.finished'],
    });
    expect(
      consumerFilter('tee', ['environment.created', 'environment.deleted'], '3.0.0')
        .filter_subjects,
    ).toEqual([
      'tee.events.*.environment.created',
      'tee.environment.created',
      'tee.events.*.environment.deleted',
      'tee.environment.deleted',
    ]);
  });

  it('take the whole prefix on 2.9, which filters on one subject only', () => {
    expect(consumerFilter('tee', ['execution.finished'], '2.9.10')).toEqual({
      filter_subject: 'tee.>',
      filter_subjects: undefined,
    });
  });
});
