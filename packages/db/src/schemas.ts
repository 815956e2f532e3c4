import { ApiKeyEntity, authMigrations } from './auth/index.js';
import type { DatabaseOptions } from './database.js';
import {
  EnvironmentEntity,
  environmentsMigrations,
  ProcessedEventEntity,
} from './environments/index.js';
import { ExecutionEntity, executionMigrations, SessionEntity } from './execution/index.js';
import {
  EnvironmentsIdempotencyKeyEntity,
  ExecutionIdempotencyKeyEntity,
} from './idempotency/idempotency-entity.js';
import { EnvironmentsOutboxEntity, ExecutionOutboxEntity } from './outbox/outbox-entity.js';
import { reaperMigrations, SweepEntity } from './reaper/index.js';

type ServiceSchema = Pick<DatabaseOptions, 'schema' | 'entities' | 'migrations'>;

// Each service's schema with all its entities and migrations, in one place: a service (or a
// test) opens `{ url, ...executionSchema, logger }` and cannot forget a table.
export const environmentsSchema: ServiceSchema = {
  schema: 'environments',
  entities: [
    EnvironmentEntity,
    EnvironmentsOutboxEntity,
    ProcessedEventEntity,
    EnvironmentsIdempotencyKeyEntity,
  ],
  migrations: environmentsMigrations,
};

export const executionSchema: ServiceSchema = {
  schema: 'execution',
  entities: [ExecutionEntity, SessionEntity, ExecutionOutboxEntity, ExecutionIdempotencyKeyEntity],
  migrations: executionMigrations,
};

/** API keys, read by every process that serves the API. */
export const authSchema: ServiceSchema = {
  schema: 'auth',
  entities: [ApiKeyEntity],
  migrations: authMigrations,
};

export const reaperSchema: ServiceSchema = {
  schema: 'reaper',
  entities: [SweepEntity],
  migrations: reaperMigrations,
};
