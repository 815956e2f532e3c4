import type { MigrationObject } from '@mikro-orm/core';
import { CreateEnvironments } from './0001-create-environments.js';
import { CreateEnvironmentsOutbox } from './0002-create-outbox.js';
import { CreateProcessedEvent } from './0003-create-processed-event.js';
import { EnvironmentTenant } from './0004-tenant.js';
import { EnvironmentsIdempotencyKey } from './0005-idempotency-key.js';
import { EnvironmentsOutboxTraceparent } from './0006-outbox-traceparent.js';

/** In order. A name, once released, never changes: it is what the migration table records. */
export const environmentsMigrations: MigrationObject[] = [
  { name: '0001-create-environments', class: CreateEnvironments },
  { name: '0002-create-outbox', class: CreateEnvironmentsOutbox },
  { name: '0003-create-processed-event', class: CreateProcessedEvent },
  { name: '0004-tenant', class: EnvironmentTenant },
  { name: '0005-idempotency-key', class: EnvironmentsIdempotencyKey },
  { name: '0006-outbox-traceparent', class: EnvironmentsOutboxTraceparent },
];
