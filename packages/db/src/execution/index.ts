export * from './execution-entity.js';
export * from './session-entity.js';
export { executionMigrations } from './migrations/index.js';
