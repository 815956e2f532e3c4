import { create, toBinary } from '@bufbuild/protobuf';
import { ExecutionStartedSchema } from '@assist-tee/proto';
import { describe, expect, it } from 'vitest';
import { decodeEvent, EventDecodeError, eventHeader, eventStreamName } from '../src/index.js';

describe('event names', () => {
  it('derives one stream name per prefix', () => {
    expect(eventStreamName('tee')).toBe('TEE_EVENTS');
    expect(eventStreamName('t_0a1b2c3d')).toBe('T_0A1B2C3D_EVENTS');
    expect(eventStreamName('tee.staging-2')).toBe('TEE_STAGING-2_EVENTS');
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
  const message = create(ExecutionStartedSchema, { ...eventHeader(), executionId: 'x' });
  const bytes = toBinary(ExecutionStartedSchema, message);

  it('decodes by the type its subject names', () => {
    const event = decodeEvent('tee', 'tee.execution.started', bytes);
    expect(event.type).toBe('execution.started');
    expect(event.message).toEqual(message);
  });

  it('refuses unknown subjects, other prefixes, garbage and messages without an event id', () => {
    expect(() => decodeEvent('tee', 'tee.execution.exploded', bytes)).toThrow(EventDecodeError);
    expect(() => decodeEvent('tee', 'other.execution.started', bytes)).toThrow(EventDecodeError);
    expect(() => decodeEvent('tee', 'tee.toString', bytes)).toThrow(EventDecodeError);
    expect(() => decodeEvent('tee', 'tee.execution.started', new Uint8Array([0xff, 0xff]))).toThrow(
      EventDecodeError,
    );
    expect(() => decodeEvent('tee', 'tee.execution.started', new Uint8Array())).toThrow(
      /no event id/,
    );
  });
});
