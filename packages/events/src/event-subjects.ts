import {
  type DecodedEvent,
  decodeEventMessage,
  EventDecodeError,
  eventTenant,
  type EventType,
  isEventType,
} from './event-types.js';

// Where events live on NATS: `${prefix}.events.${tenant}.${type}`, e.g.
// `tee.events.acme.execution.finished`, so that `tee.events.acme.>` is one tenant's events (a
// NATS permission, a consumer filter) and `tee.events.*.execution.finished` one type's. The
// `events` token keeps tenants apart from the subjects of releases before this one
// (`tee.execution.finished`): a tenant named "execution" cannot reach them.

const TOKEN = '[A-Za-z0-9_-]+';
const SUBJECT_PREFIX = new RegExp(`^${TOKEN}(\\.${TOKEN})*$`);
const SUBJECT_TOKEN = new RegExp(`^${TOKEN}$`);

/**
 * The tenant token of events without a tenant (made before there were tenants): tenant ids
 * start with a letter or digit, so no tenant has it.
 */
const NO_TENANT = '_';

/** Throws unless the prefix is one or more plain subject tokens (no wildcards, no spaces). */
export function assertSubjectPrefix(prefix: string): void {
  if (!SUBJECT_PREFIX.test(prefix)) {
    throw new Error(
      `invalid event subject prefix ${JSON.stringify(prefix)}: expected tokens of letters, digits, "_" or "-" separated by "."`,
    );
  }
}

/** `${PREFIX}_EVENTS`, so each prefix (a test stack's, say) gets a stream of its own. */
export function eventStreamName(prefix: string): string {
  return `${prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, '_')}_EVENTS`;
}

/** The subject token of a tenant id: NO_TENANT for none; throws when it is not one token. */
function tenantToken(tenantId: string): string {
  if (tenantId === '') return NO_TENANT;
  if (!SUBJECT_TOKEN.test(tenantId)) {
    throw new Error(`tenant id ${JSON.stringify(tenantId)} cannot be a subject token`);
  }
  return tenantId;
}

/** The subject an event is published on. */
export function eventSubject(prefix: string, tenantId: string, type: EventType): string {
  return `${prefix}.events.${tenantToken(tenantId)}.${type}`;
}

/**
 * The subjects holding one type's events of every tenant: today's form and the form without a
 * tenant, which the stream may still hold from a release before this one.
 */
export function eventFilterSubjects(prefix: string, type: EventType): string[] {
  return [`${prefix}.events.*.${type}`, `${prefix}.${type}`];
}

/** The type and tenant token a subject names (tenant undefined in the old form), if any. */
function parseEventSubject(
  prefix: string,
  subject: string,
): { type: EventType; tenant?: string } | undefined {
  if (!subject.startsWith(`${prefix}.`)) return undefined;
  const rest = subject.slice(prefix.length + 1);
  if (isEventType(rest)) return { type: rest };
  const [events, tenant = '', ...type] = rest.split('.');
  const name = type.join('.');
  if (events !== 'events' || !SUBJECT_TOKEN.test(tenant) || !isEventType(name)) return undefined;
  return { type: name, tenant };
}

/** The event type a subject under `prefix` names, in either form, if any. */
export function eventTypeOf(prefix: string, subject: string): EventType | undefined {
  return parseEventSubject(prefix, subject)?.type;
}

/**
 * The typed event on a subject under `prefix`, in either form; throws EventDecodeError when
 * there is none, or when the subject names another tenant than the message does.
 */
export function decodeEvent(prefix: string, subject: string, data: Uint8Array): DecodedEvent {
  const parsed = parseEventSubject(prefix, subject);
  if (parsed === undefined) throw new EventDecodeError(`no event type has the subject ${subject}`);
  const event = decodeEventMessage(parsed.type, data);
  if (parsed.tenant !== undefined && parsed.tenant !== (eventTenant(event) || NO_TENANT)) {
    throw new EventDecodeError(`the ${parsed.type} event on ${subject} is another tenant's`);
  }
  return event;
}
