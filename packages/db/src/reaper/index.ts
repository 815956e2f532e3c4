export * from './sweep-entity.js';
export { reaperMigrations } from './migrations/index.js';
