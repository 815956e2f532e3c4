import { toJson } from '@bufbuild/protobuf';
import { TimestampSchema } from '@bufbuild/protobuf/wkt';
import { headers, type MsgHdrs } from '@nats-io/transport-node';
import {
  type DecodedEvent,
  eventResourceId,
  eventTenant,
  type EventType,
  eventTypes,
} from './event-types.js';

// The CloudEvents NATS protocol binding, binary content mode: the attributes in `ce-*` headers,
// the protobuf message as the body. Consumers pick the schema by `ce-type` or `ce-dataschema`.

/** `ce-type`: the proto package, then the event type, e.g. assist_tee.v1.execution.finished. */
function cloudEventType(type: EventType): string {
  return `assist_tee.v1.${type}`;
}

/**
 * `ce-source`: the service that publishes the type (a URI reference, stable across replicas);
 * the execution service publishes execution and session events.
 */
function cloudEventSource(type: EventType): string {
  return type.startsWith('environment.') ? '/assist-tee/environments' : '/assist-tee/execution';
}

/**
 * `ce-dataschema`: the type URL of the message (as google.protobuf.Any names it), which the
 * CloudEvents protobuf format asks for when the data is a protobuf message.
 */
function cloudEventDataSchema(type: EventType): string {
  return `type.googleapis.com/${eventTypes[type].typeName}`;
}

const PROTOBUF_CONTENT_TYPE = 'application/protobuf';

/** The headers of an event; Nats-Msg-Id (= ce-id) is set by the JetStream publish. */
export function cloudEventHeaders(event: DecodedEvent): MsgHdrs {
  const { type, message } = event;
  const attributes: [string, string][] = [
    ['ce-specversion', '1.0'],
    ['ce-id', message.eventId],
    ['ce-type', cloudEventType(type)],
    ['ce-source', cloudEventSource(type)],
    ['ce-subject', eventResourceId(event)],
    // RFC 3339 with the message's own precision: when the change happened, not the publish.
    ['ce-time', message.time === undefined ? '' : toJson(TimestampSchema, message.time)],
    ['ce-datacontenttype', PROTOBUF_CONTENT_TYPE],
    ['ce-dataschema', cloudEventDataSchema(type)],
    // Extension attribute: names are lowercase letters and digits only.
    ['ce-tenantid', eventTenant(event)],
  ];
  const result = headers();
  for (const [name, value] of attributes) {
    // An empty attribute is left out (the spec allows none); ce-id never is empty.
    if (value !== '') result.set(name, percentEncode(value));
  }
  // The binding carries the data's type in ce-datacontenttype; NATS tools read Content-Type.
  result.set('content-type', PROTOBUF_CONTENT_TYPE);
  return result;
}

/** The binding's rule: space, `"`, `%` and anything outside printable ASCII as UTF-8 %XX. */
function percentEncode(value: string): string {
  return value.replace(/[^\u0021\u0023\u0024\u0026-\u007e]/gu, (char) =>
    [...new TextEncoder().encode(char)]
      .map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`)
      .join(''),
  );
}
