import type { MigrationObject } from '@mikro-orm/core';
import { CreateSweeps } from './0001-create-sweeps.js';

/** In order. A name, once released, never changes: it is what the migration table records. */
export const reaperMigrations: MigrationObject[] = [
  { name: '0001-create-sweeps', class: CreateSweeps },
];
