import { defineEntity, p } from '@mikro-orm/core';
import { createOutboxIndexSql, OUTBOX_UNPUBLISHED_INDEX } from './migration-sql.js';

// Each service's outbox lives in its own schema, next to the state its events describe, so a
// state change and its event are written by one transaction. Must match migration-sql.ts:
// test/migrations.test.ts fails on any drift.
const outboxProperties = () => ({
  /** The event's id: also its Nats-Msg-Id, so a re-published event is dropped by JetStream. */
  eventId: p.uuid().primary(),
  /** The event type, e.g. "environment.created". */
  type: p.text(),
  /** The event message, protobuf binary. */
  payload: p.blob(),
  createdAt: p.datetime(),
  /** When JetStream acknowledged it; null while it waits for the relay. */
  publishedAt: p.datetime().strictNullable(),
  /** The W3C traceparent of the change the event reports; null when it was not traced. */
  traceparent: p.text().strictNullable(),
});

const outboxIndex = (schema: string) => ({
  name: OUTBOX_UNPUBLISHED_INDEX,
  expression: createOutboxIndexSql(schema),
});

export const EnvironmentsOutboxSchema = defineEntity({
  name: 'EnvironmentsOutboxEntity',
  schema: 'environments',
  tableName: 'outbox',
  properties: outboxProperties(),
  indexes: [outboxIndex('environments')],
});
export class EnvironmentsOutboxEntity extends EnvironmentsOutboxSchema.class {}
EnvironmentsOutboxSchema.setClass(EnvironmentsOutboxEntity);

export const ExecutionOutboxSchema = defineEntity({
  name: 'ExecutionOutboxEntity',
  schema: 'execution',
  tableName: 'outbox',
  properties: outboxProperties(),
  indexes: [outboxIndex('execution')],
});
export class ExecutionOutboxEntity extends ExecutionOutboxSchema.class {}
ExecutionOutboxSchema.setClass(ExecutionOutboxEntity);

/** Either service's outbox entity: the relay works the same on both. */
export type OutboxEntityClass = typeof EnvironmentsOutboxEntity | typeof ExecutionOutboxEntity;
