export * from './auth/index.js';
export * from './database.js';
export type { JsonValue } from './json-value.js';
export * from './environments/index.js';
export * from './execution/index.js';
export * from './outbox/outbox-entity.js';
export * from './reaper/index.js';
export * from './schemas.js';
