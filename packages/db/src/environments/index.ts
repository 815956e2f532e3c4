export * from './environment-entity.js';
export { environmentsMigrations } from './migrations/index.js';
