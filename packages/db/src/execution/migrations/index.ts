import type { MigrationObject } from '@mikro-orm/core';
import { CreateExecutions } from './0001-create-executions.js';

/** In order. A name, once released, never changes: it is what the migration table records. */
export const executionMigrations: MigrationObject[] = [
  { name: '0001-create-executions', class: CreateExecutions },
];
