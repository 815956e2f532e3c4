import { type DescMessage, fromBinary, type MessageShape, toBinary } from '@bufbuild/protobuf';
import { type Timestamp, timestampNow } from '@bufbuild/protobuf/wkt';
import {
  EnvironmentCreatedSchema,
  EnvironmentDeletedSchema,
  EnvironmentFailedSchema,
  ExecutionFinishedSchema,
  ExecutionStartedSchema,
} from '@assist-tee/proto';
import { randomUUID } from 'node:crypto';

/** Every event: its type (the subject after the prefix) and its protobuf message. */
export const eventTypes = {
  'environment.created': EnvironmentCreatedSchema,
  'environment.failed': EnvironmentFailedSchema,
  'environment.deleted': EnvironmentDeletedSchema,
  'execution.started': ExecutionStartedSchema,
  'execution.finished': ExecutionFinishedSchema,
} as const;

export type EventType = keyof typeof eventTypes;
export type EventMessage<T extends EventType> = MessageShape<(typeof eventTypes)[T]>;

/** A decoded event, typed by its `type`. */
export type DecodedEvent = { [T in EventType]: { type: T; message: EventMessage<T> } }[EventType];

/** An event as a consumer receives it. */
export type ReceivedEvent = {
  [T in EventType]: {
    type: T;
    message: EventMessage<T>;
    subject: string;
    streamSequence: number;
    redelivered: boolean;
  };
}[EventType];

export function isEventType(value: string): value is EventType {
  return Object.hasOwn(eventTypes, value);
}

/** eventId (uuid v4) and time (now) for a new event message. */
export function eventHeader(): { eventId: string; time: Timestamp } {
  return { eventId: randomUUID(), time: timestampNow() };
}

const SUBJECT_PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** Throws unless the prefix is one or more plain subject tokens (no wildcards, no spaces). */
export function assertSubjectPrefix(prefix: string): void {
  if (!SUBJECT_PREFIX.test(prefix)) {
    throw new Error(
      `invalid event subject prefix ${JSON.stringify(prefix)}: expected tokens of letters, digits, "_" or "-" separated by "."`,
    );
  }
}

export function eventSubject(prefix: string, type: EventType): string {
  return `${prefix}.${type}`;
}

/** `${PREFIX}_EVENTS`, so each prefix (a test stack's, say) gets a stream of its own. */
export function eventStreamName(prefix: string): string {
  return `${prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, '_')}_EVENTS`;
}

export class EventDecodeError extends Error {
  override name = 'EventDecodeError';
}

/** The typed event on a subject under `prefix`; throws EventDecodeError when there is none. */
export function decodeEvent(prefix: string, subject: string, data: Uint8Array): DecodedEvent {
  const type = subject.startsWith(`${prefix}.`) ? subject.slice(prefix.length + 1) : '';
  if (!isEventType(type)) throw new EventDecodeError(`no event type has the subject ${subject}`);
  let message: EventMessage<EventType>;
  try {
    message = fromBinary(eventTypes[type] as DescMessage, data) as EventMessage<EventType>;
  } catch (error) {
    throw new EventDecodeError(`the ${type} event does not decode: ${(error as Error).message}`, {
      cause: error,
    });
  }
  // Every publisher sets it (it is the dedup key); without it the bytes were not an event.
  if (message.eventId === '') throw new EventDecodeError(`the ${type} event has no event id`);
  return { type, message } as DecodedEvent;
}

/** The protobuf binary of an event, as it is published (and stored in an outbox). */
export function encodeEvent<T extends EventType>(type: T, message: EventMessage<T>): Uint8Array {
  if (!isEventType(type)) throw new Error(`unknown event type ${JSON.stringify(type)}`);
  if (message.eventId === '') throw new Error(`the ${type} event has no eventId`);
  return toBinary(eventTypes[type] as DescMessage, message);
}
