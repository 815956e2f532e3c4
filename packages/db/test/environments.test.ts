import { randomUUID } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EnvironmentEntity,
  type Database,
  type EnvironmentRow,
  type EnvironmentStatusName,
} from '../src/index.js';
import { openEnvironments } from './support.js';

describe('EnvironmentEntity', () => {
  let database: TestDatabase;
  let db: Database;
  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openEnvironments(database.url);
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  const newRow = (overrides: Partial<EnvironmentRow> = {}) => ({
    id: randomUUID(),
    tenantId: 'acme',
    status: 'PENDING' as const,
    runtime: 'DENO' as const,
    mainModule: 'main.ts',
    modulePaths: ['main.ts', 'lib/util.ts'],
    modulesSizeBytes: 3_000_000_000,
    dependencies: { npm: ['zod@3'], url: [] },
    permissions: { allowNet: ['api.example.com'], allowEnv: ['TOKEN'] },
    ttlSeconds: 3600,
    labels: { team: 'agents', 'with space': 'ünïcode' },
    error: null,
    lockfile: null,
    createdAt: new Date(),
    updatedAt: new Date(),
    lastUsedAt: null,
    deletedAt: null,
    ...overrides,
  });

  it('round-trips every column, bigints as numbers, execution_count defaulting to 0', async () => {
    const data = newRow();
    const em = db.em();
    em.create(EnvironmentEntity, data);
    await em.flush();

    const row = await db.em().findOneOrFail(EnvironmentEntity, { id: data.id });
    expect(row).toBeInstanceOf(EnvironmentEntity);
    expect({ ...row }).toEqual({ ...data, executionCount: 0 });
    expect(typeof row.modulesSizeBytes).toBe('number');

    // A change through a fresh EntityManager is tracked and written.
    const update = db.em();
    const loaded = await update.findOneOrFail(EnvironmentEntity, { id: data.id });
    loaded.status = 'READY';
    loaded.executionCount += 2;
    loaded.lockfile = '{"version":"4"}';
    loaded.lastUsedAt = new Date('2030-01-02T03:04:05.678Z');
    await update.flush();
    const reread = await db.em().findOneOrFail(EnvironmentEntity, { id: data.id });
    expect(reread).toMatchObject({
      status: 'READY',
      executionCount: 2,
      lockfile: '{"version":"4"}',
      lastUsedAt: new Date('2030-01-02T03:04:05.678Z'),
    });
  });

  it('rejects a status it does not know, in the ORM and in the table', async () => {
    const em = db.em();
    em.create(EnvironmentEntity, newRow({ status: 'BOGUS' as EnvironmentStatusName }));
    await expect(em.flush()).rejects.toThrow(/EnvironmentEntity\.status/);
    await expect(
      db.em().getConnection().execute(`update "environments"."environment" set "status" = 'BOGUS'`),
    ).rejects.toThrow(/environment_status_check/);
  });

  it('pages newest first with a (created_at, id) keyset cursor', async () => {
    const labels = { suite: randomUUID() };
    const base = Date.parse('2031-01-01T00:00:00Z');
    const em = db.em();
    // 9 rows, several sharing a created_at, so the id tie-break matters.
    const rows = Array.from({ length: 9 }, (_, i) =>
      em.create(
        EnvironmentEntity,
        newRow({
          labels,
          status: i % 3 === 2 ? 'DELETED' : 'READY',
          createdAt: new Date(base + Math.floor(i / 2) * 1000),
        }),
      ),
    );
    await em.flush();

    const page = async (
      status: EnvironmentStatusName | { $ne: EnvironmentStatusName },
      cursor?: EnvironmentRow,
    ) =>
      db.em().find(
        EnvironmentEntity,
        {
          labels,
          status,
          ...(cursor && {
            $or: [
              { createdAt: { $lt: cursor.createdAt } },
              { createdAt: cursor.createdAt, id: { $lt: cursor.id } },
            ],
          }),
        },
        { orderBy: { createdAt: 'desc', id: 'desc' }, limit: 2 },
      );
    const all = async (status: EnvironmentStatusName | { $ne: EnvironmentStatusName }) => {
      const seen: string[] = [];
      let cursor: EnvironmentRow | undefined;
      for (;;) {
        const found = await page(status, cursor);
        seen.push(...found.map((row) => row.id));
        cursor = found.at(-1);
        if (found.length < 2 || cursor === undefined) return seen;
      }
    };
    const expected = (keep: (row: EnvironmentRow) => boolean) =>
      rows
        .filter(keep)
        .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1))
        .map((row) => row.id);

    expect(await all('READY')).toEqual(expected((row) => row.status === 'READY'));
    expect(await all({ $ne: 'DELETED' })).toEqual(expected((row) => row.status !== 'DELETED'));
    expect(await all('DELETED')).toEqual(expected((row) => row.status === 'DELETED'));
  });
});
