import { defineEntity, p } from '@mikro-orm/core';

// Must match migrations/ exactly: test/schema-drift.test.ts fails on any difference.
export const ApiKeyEntitySchema = defineEntity({
  name: 'ApiKeyEntity',
  schema: 'auth',
  tableName: 'api_key',
  properties: {
    id: p.uuid().primary(),
    tenantId: p.text(),
    /** What the key is for, as its creator put it. */
    name: p.text(),
    /** SHA-256 of the key, hex: the key itself is shown once, when it is created. */
    keyHash: p.text().unique(),
    createdAt: p.datetime(),
    revokedAt: p.datetime().strictNullable(),
  },
});

/** One API key of a tenant. */
export class ApiKeyEntity extends ApiKeyEntitySchema.class {}
ApiKeyEntitySchema.setClass(ApiKeyEntity);
