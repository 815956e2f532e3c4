export * from './environment-entity.js';
export * from './processed-event-entity.js';
export { environmentsMigrations } from './migrations/index.js';
