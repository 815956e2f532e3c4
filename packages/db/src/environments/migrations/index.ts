import type { MigrationObject } from '@mikro-orm/core';
import { CreateEnvironments } from './0001-create-environments.js';

/** In order. A name, once released, never changes: it is what the migration table records. */
export const environmentsMigrations: MigrationObject[] = [
  { name: '0001-create-environments', class: CreateEnvironments },
];
