import { defineEntity, p } from '@mikro-orm/core';
import { IDEMPOTENCY_EXPIRES_INDEX } from './migration-sql.js';

// Each service keeps the idempotency keys of its own RPCs in its own schema. Must match
// migration-sql.ts: test/migrations.test.ts fails on any drift.
const idempotencyKeyProperties = () => ({
  /** The caller's tenant; '' for the services' key, which is no tenant. */
  tenantId: p.text().primary(),
  /** Which call the key belongs to, e.g. "CreateEnvironment". */
  rpc: p.text().primary(),
  requestId: p.text().primary(),
  /** SHA-256 (hex) of the request without its request_id, in a canonical form. */
  requestHash: p.text(),
  state: p.enum(['IN_PROGRESS', 'DONE'] as const),
  /** The answer (protobuf binary) once DONE. */
  response: p.blob().strictNullable(),
  /** The instance running the first call, which renews the lease while it does. */
  instanceId: p.text(),
  /** An IN_PROGRESS row past its lease was cut off (a crash): its effects are unknown. */
  leaseExpiresAt: p.datetime(),
  createdAt: p.datetime(),
  /** End of the retention window: lookups ignore the row after it, a sweep deletes it. */
  expiresAt: p.datetime().index(IDEMPOTENCY_EXPIRES_INDEX),
});

export const EnvironmentsIdempotencyKeySchema = defineEntity({
  name: 'EnvironmentsIdempotencyKeyEntity',
  schema: 'environments',
  tableName: 'idempotency_key',
  properties: idempotencyKeyProperties(),
});
export class EnvironmentsIdempotencyKeyEntity extends EnvironmentsIdempotencyKeySchema.class {}
EnvironmentsIdempotencyKeySchema.setClass(EnvironmentsIdempotencyKeyEntity);

export const ExecutionIdempotencyKeySchema = defineEntity({
  name: 'ExecutionIdempotencyKeyEntity',
  schema: 'execution',
  tableName: 'idempotency_key',
  properties: idempotencyKeyProperties(),
});
export class ExecutionIdempotencyKeyEntity extends ExecutionIdempotencyKeySchema.class {}
ExecutionIdempotencyKeySchema.setClass(ExecutionIdempotencyKeyEntity);

/** Either service's entity: the idempotency logic works the same on both. */
export type IdempotencyKeyEntityClass =
  typeof EnvironmentsIdempotencyKeyEntity | typeof ExecutionIdempotencyKeyEntity;
