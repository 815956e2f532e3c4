import { defineEntity, p } from '@mikro-orm/core';

export type EnvironmentStatusName = 'PENDING' | 'READY' | 'FAILED' | 'DELETED';
export type RuntimeName = 'DENO' | 'BUN';

export interface EnvironmentDependencies {
  npm: string[];
  url: string[];
}

export interface EnvironmentPermissions {
  allowNet: string[];
  allowEnv: string[];
}

// Must match migrations/ exactly: test/schema-drift.test.ts fails on any difference.
export const EnvironmentEntitySchema = defineEntity({
  name: 'EnvironmentEntity',
  schema: 'environments',
  tableName: 'environment',
  properties: {
    id: p.uuid().primary(),
    tenantId: p.text(),
    status: p.enum(['PENDING', 'READY', 'FAILED', 'DELETED'] as const),
    runtime: p.enum(['DENO', 'BUN'] as const),
    mainModule: p.text(),
    modulePaths: p.json<string[]>(),
    // bigint in SQL; a JS number is exact up to 2^53, far beyond any size or count here.
    modulesSizeBytes: p.bigint('number'),
    dependencies: p.json<EnvironmentDependencies>(),
    permissions: p.json<EnvironmentPermissions>(),
    ttlSeconds: p.integer(),
    labels: p.json<Record<string, string>>(),
    error: p.text().strictNullable(),
    lockfile: p.text().strictNullable(),
    executionCount: p.bigint('number').defaultRaw('0'),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
    lastUsedAt: p.datetime().strictNullable(),
    deletedAt: p.datetime().strictNullable(),
  },
  indexes: [
    {
      // A tenant's environments newest first: listing, and counting the live ones (quota).
      name: 'environment_tenant_id_created_at_id_idx',
      columns: [{ name: 'tenant_id' }, { name: 'created_at', sort: 'desc' }, { name: 'id' }],
    },
    {
      // Listing newest first with a (created_at, id) keyset cursor, optionally by status.
      name: 'environment_status_created_at_id_idx',
      columns: [
        { name: 'status' },
        { name: 'created_at', sort: 'desc' },
        // `id` ascending, as in the execution index (see there for why).
        { name: 'id' },
      ],
    },
  ],
});

/** One environment row; create with `em.create(EnvironmentEntity, {...})`. */
export class EnvironmentEntity extends EnvironmentEntitySchema.class {}
EnvironmentEntitySchema.setClass(EnvironmentEntity);

export type EnvironmentRow = EnvironmentEntity;
