/** The outbox table of one service's schema (the same shape in every schema). */
export function createOutboxSql(schema: string): string[] {
  return [
    `create table "${schema}"."outbox" (
      "event_id" uuid not null primary key,
      "type" text not null,
      "payload" bytea not null,
      "created_at" timestamptz not null,
      "published_at" timestamptz null
    )`,
    createOutboxIndexSql(schema),
  ];
}

export const OUTBOX_UNPUBLISHED_INDEX = 'outbox_unpublished_idx';

/** The relay reads the unpublished rows oldest first; published ones are pruned. */
export function createOutboxIndexSql(schema: string): string {
  return `create index "${OUTBOX_UNPUBLISHED_INDEX}" on "${schema}"."outbox" ("created_at") where "published_at" is null`;
}

export function dropOutboxSql(schema: string): string[] {
  return [`drop table "${schema}"."outbox"`];
}

/** The trace context of the change an event reports, sent as its traceparent header. */
export function addOutboxTraceparentSql(schema: string): string {
  return `alter table "${schema}"."outbox" add column "traceparent" text null`;
}

export function dropOutboxTraceparentSql(schema: string): string {
  return `alter table "${schema}"."outbox" drop column "traceparent"`;
}
