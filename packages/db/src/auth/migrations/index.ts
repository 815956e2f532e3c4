import type { MigrationObject } from '@mikro-orm/core';
import { CreateApiKeys } from './0001-create-api-keys.js';

/** In order. A name, once released, never changes: it is what the migration table records. */
export const authMigrations: MigrationObject[] = [
  { name: '0001-create-api-keys', class: CreateApiKeys },
];
