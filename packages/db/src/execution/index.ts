export * from './execution-entity.js';
export { executionMigrations } from './migrations/index.js';
