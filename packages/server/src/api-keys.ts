import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { ApiKeyEntity, authSchema, type Database, openDatabase } from '@assist-tee/db';
import type { Logger } from '@assist-tee/logger';

/** Who is calling: a tenant's key, or the key the services share (which sees every tenant). */
export type Principal = { kind: 'tenant'; tenantId: string } | { kind: 'service' };

export interface ApiKeyInfo {
  id: string;
  tenantId: string;
  name: string;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface ApiKeys {
  /** Whose key this is; undefined for an unknown or revoked key. */
  verify(key: string): Promise<Principal | undefined>;
  /** A new key for the tenant: the key itself is returned here once, and stored only hashed. */
  create(tenantId: string, name: string): Promise<{ id: string; key: string }>;
  /** Revokes a key by id; false when there is no such live key. */
  revoke(id: string): Promise<boolean>;
  list(tenantId?: string): Promise<ApiKeyInfo[]>;
  close(): Promise<void>;
}

export interface ApiKeysOptions {
  databaseUrl: string;
  /** The services' shared key. */
  serviceKey: string;
  logger: Logger;
  /**
   * How long a verified (or refused) key is remembered: a revocation takes effect within this,
   * without a restart.
   */
  cacheMs?: number;
}

const TENANT_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

const hash = (key: string) => createHash('sha256').update(key).digest('hex');

/** Why `tenantId` cannot name a tenant, or undefined when it can. */
export function tenantIdProblem(tenantId: string): string | undefined {
  return TENANT_ID.test(tenantId)
    ? undefined
    : 'a tenant id is 1 to 63 lowercase letters, digits, _ and - (starting with a letter or digit)';
}

/** API keys in Postgres (schema "auth"), stored as SHA-256 hashes. */
export async function openApiKeys(options: ApiKeysOptions): Promise<ApiKeys> {
  const cacheMs = options.cacheMs ?? 5_000;
  const db: Database = await openDatabase({
    url: options.databaseUrl,
    ...authSchema,
    logger: options.logger,
  });
  const serviceHash = Buffer.from(hash(options.serviceKey), 'hex');
  const cache = new Map<string, { principal: Principal | undefined; until: number }>();
  const info = (row: ApiKeyEntity): ApiKeyInfo => ({
    id: row.id,
    tenantId: row.tenantId,
    name: row.name,
    createdAt: row.createdAt,
    revokedAt: row.revokedAt,
  });

  return {
    async verify(key) {
      const keyHash = hash(key);
      if (timingSafeEqual(Buffer.from(keyHash, 'hex'), serviceHash)) return { kind: 'service' };
      const cached = cache.get(keyHash);
      if (cached !== undefined && cached.until > Date.now()) return cached.principal;
      const row = await db.em().findOne(ApiKeyEntity, { keyHash, revokedAt: null });
      const principal: Principal | undefined =
        row === null ? undefined : { kind: 'tenant', tenantId: row.tenantId };
      if (cache.size > 10_000) cache.clear();
      cache.set(keyHash, { principal, until: Date.now() + cacheMs });
      return principal;
    },
    async create(tenantId, name) {
      const problem = tenantIdProblem(tenantId);
      if (problem !== undefined) throw new Error(problem);
      const key = `tee_${randomBytes(24).toString('base64url')}`;
      const em = db.em();
      const row = em.create(ApiKeyEntity, {
        id: randomUUID(),
        tenantId,
        name,
        keyHash: hash(key),
        createdAt: new Date(),
        revokedAt: null,
      });
      await em.flush();
      return { id: row.id, key };
    },
    async revoke(id) {
      const revoked = await db
        .em()
        .nativeUpdate(ApiKeyEntity, { id, revokedAt: null }, { revokedAt: new Date() });
      return revoked > 0;
    },
    async list(tenantId) {
      const rows = await db.em().find(ApiKeyEntity, tenantId === undefined ? {} : { tenantId }, {
        orderBy: { createdAt: 'asc' },
      });
      return rows.map(info);
    },
    close: () => db.close(),
  };
}
