export * from './api-key-entity.js';
export { authMigrations } from './migrations/index.js';
