export * from './auth/index.js';
export * from './database.js';
export type { JsonValue } from './json-value.js';
export * from './environments/index.js';
export * from './execution/index.js';
export * from './idempotency/idempotency-entity.js';
// Callers that insert a row which may exist already tell that error apart.
export { UniqueConstraintViolationException } from '@mikro-orm/core';
export * from './outbox/outbox-entity.js';
export * from './reaper/index.js';
export * from './schemas.js';
