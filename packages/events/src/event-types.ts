import { type DescMessage, fromBinary, type MessageShape, toBinary } from '@bufbuild/protobuf';
import { type Timestamp, timestampNow } from '@bufbuild/protobuf/wkt';
import {
  EnvironmentCreatedSchema,
  EnvironmentDeletedSchema,
  EnvironmentFailedSchema,
  ExecutionFinishedSchema,
  ExecutionStartedSchema,
  SessionCreatedSchema,
  SessionEndedSchema,
} from '@assist-tee/proto';
import { randomUUID } from 'node:crypto';

/** Every event: its type (the end of its subject) and its protobuf message. */
export const eventTypes = {
  'environment.created': EnvironmentCreatedSchema,
  'environment.failed': EnvironmentFailedSchema,
  'environment.deleted': EnvironmentDeletedSchema,
  'execution.started': ExecutionStartedSchema,
  'execution.finished': ExecutionFinishedSchema,
  'session.created': SessionCreatedSchema,
  'session.ended': SessionEndedSchema,
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

export class EventDecodeError extends Error {
  override name = 'EventDecodeError';
}

/** The typed message of an event of `type`; throws EventDecodeError when it is not one. */
export function decodeEventMessage(type: EventType, data: Uint8Array): DecodedEvent {
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

/** The tenant an event belongs to ("" only in events made before there were tenants). */
export function eventTenant(event: DecodedEvent): string {
  switch (event.type) {
    case 'environment.created':
    case 'environment.failed':
      return event.message.environment?.tenantId ?? '';
    case 'execution.finished':
      return event.message.execution?.tenantId ?? '';
    case 'session.created':
    case 'session.ended':
      return event.message.session?.tenantId ?? '';
    default:
      return event.message.tenantId;
  }
}

/** The id of the environment, execution or session an event is about. */
export function eventResourceId(event: DecodedEvent): string {
  switch (event.type) {
    case 'environment.created':
    case 'environment.failed':
      return event.message.environment?.id ?? '';
    case 'environment.deleted':
      return event.message.environmentId;
    case 'execution.started':
      return event.message.executionId;
    case 'execution.finished':
      return event.message.execution?.id ?? '';
    case 'session.created':
    case 'session.ended':
      return event.message.session?.id ?? '';
  }
}

/** The protobuf binary of an event, as it is published (and stored in an outbox). */
export function encodeEvent<T extends EventType>(type: T, message: EventMessage<T>): Uint8Array {
  if (!isEventType(type)) throw new Error(`unknown event type ${JSON.stringify(type)}`);
  if (message.eventId === '') throw new Error(`the ${type} event has no eventId`);
  return toBinary(eventTypes[type] as DescMessage, message);
}
