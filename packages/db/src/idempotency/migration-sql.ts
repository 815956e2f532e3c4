/**
 * The idempotency keys of one service's schema (the same shape in every schema): one row per
 * (tenant, RPC, request_id), holding the request's hash and, once done, the answer.
 */
export function createIdempotencyKeySql(schema: string): string[] {
  return [
    `create table "${schema}"."idempotency_key" (
      "tenant_id" text not null,
      "rpc" text not null,
      "request_id" text not null,
      "request_hash" text not null,
      "state" text not null
        constraint "idempotency_key_state_check" check ("state" in ('IN_PROGRESS', 'DONE')),
      "response" bytea null,
      "instance_id" text not null,
      "lease_expires_at" timestamptz not null,
      "created_at" timestamptz not null,
      "expires_at" timestamptz not null,
      constraint "idempotency_key_pkey" primary key ("tenant_id", "rpc", "request_id")
    )`,
    `create index "${IDEMPOTENCY_EXPIRES_INDEX}" on "${schema}"."idempotency_key" ("expires_at")`,
  ];
}

export const IDEMPOTENCY_EXPIRES_INDEX = 'idempotency_key_expires_at_idx';

export function dropIdempotencyKeySql(schema: string): string[] {
  return [`drop table "${schema}"."idempotency_key"`];
}
