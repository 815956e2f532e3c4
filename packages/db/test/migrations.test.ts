import { Migration } from '@mikro-orm/migrations';
import { createTestDatabase, type TestDatabase } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type DatabaseOptions,
  EnvironmentEntity,
  environmentsMigrations,
  environmentsSchema,
  openDatabase,
} from '../src/index.js';
import { openAuth, openEnvironments, openExecution, openReaper, testLogger } from './support.js';

describe('openDatabase', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.drop();
  });

  it('applies each service’s migrations into its own schema, once', async () => {
    const environments = await openEnvironments(database.url);
    const execution = await openExecution(database.url);
    try {
      const connection = environments.em().getConnection();
      const applied = async (schema: string) =>
        (
          await connection.execute<{ name: string }[]>(
            `select name from "${schema}"."mikro_orm_migrations" order by id`,
          )
        ).map((row) => row.name);
      expect(await applied('environments')).toEqual([
        '0001-create-environments',
        '0002-create-outbox',
        '0003-create-processed-event',
        '0004-tenant',
        '0005-idempotency-key',
        '0006-outbox-traceparent',
      ]);
      expect(await applied('execution')).toEqual([
        '0001-create-executions',
        '0002-process-limit-status',
        '0003-create-outbox',
        '0004-result-error-json',
        '0005-tenant',
        '0006-idempotency-key',
        '0007-cold-start-reason',
        '0008-sessions',
        '0009-trace-context',
      ]);

      // A second open (a restart, another replica) finds nothing pending.
      const again = await openEnvironments(database.url);
      expect(await again.orm.migrator.getPending()).toEqual([]);
      await again.close();
      expect(await applied('environments')).toEqual([
        '0001-create-environments',
        '0002-create-outbox',
        '0003-create-processed-event',
        '0004-tenant',
        '0005-idempotency-key',
        '0006-outbox-traceparent',
      ]);
    } finally {
      await environments.close();
      await execution.close();
    }
  });

  it('lets replicas that start together on a fresh database take turns', async () => {
    const fresh = await createTestDatabase();
    const runs: string[] = [];
    // A last migration that records who ran it and, while it runs, waits until the other two
    // replicas are queued on the migration lock: without the lock they would be migrating too,
    // the wait would time out and the probe would run more than once.
    const withProbe = (replica: number): DatabaseOptions['migrations'] => {
      class Probe extends Migration {
        override async up(): Promise<void> {
          runs.push(`${replica} start`);
          await vi.waitFor(
            async () => {
              const [row] = await this.execute(
                `select count(*)::int as "waiting" from pg_locks
                   where locktype = 'advisory' and not granted
                     and database = (select oid from pg_database where datname = current_database())`,
              );
              expect(row?.waiting).toBe(2);
            },
            { timeout: 5_000, interval: 50 },
          );
          runs.push(`${replica} end`);
        }
      }
      return [...environmentsSchema.migrations, { name: '9999-probe', class: Probe }];
    };
    try {
      const opened = await Promise.allSettled(
        [1, 2, 3].map((replica) =>
          openDatabase({
            url: fresh.url,
            ...environmentsSchema,
            migrations: withProbe(replica),
            logger: testLogger(),
          }),
        ),
      );
      const databases = opened.flatMap((result) =>
        result.status === 'fulfilled' ? [result.value] : [],
      );
      try {
        expect(opened.filter((result) => result.status === 'rejected')).toEqual([]);
        // One replica migrated, start to end, while the other two waited; they found nothing.
        expect(runs).toHaveLength(2);
        expect(runs[1]).toBe(runs[0]?.replace('start', 'end'));
        const names = await databases[0]
          ?.em()
          .getConnection()
          .execute<{ name: string }[]>('select name from "environments"."mikro_orm_migrations"');
        expect(names?.map((row) => row.name).sort()).toEqual([
          ...environmentsSchema.migrations.map((migration) => migration.name),
          '9999-probe',
        ]);
      } finally {
        await Promise.all(databases.map((db) => db.close()));
      }
    } finally {
      await fresh.drop();
    }
  });

  it('has entities that match the migrations exactly (no schema drift)', async () => {
    for (const [schema, open] of [
      ['environments', openEnvironments],
      ['execution', openExecution],
      ['reaper', openReaper],
      ['auth', openAuth],
    ] as const) {
      const db = await open(database.url);
      try {
        // Scoped to the service's schema: the other service's tables are not drift.
        const drift = await db.orm.schema.getUpdateSchemaSQL({ wrap: false, schema });
        expect(drift.trim()).toBe('');
      } finally {
        await db.close();
      }
    }
  });

  it('pings a database that is there and throws once it is gone', async () => {
    const fresh = await createTestDatabase();
    const db = await openEnvironments(fresh.url);
    try {
      await expect(db.ping()).resolves.toBeUndefined();
      await fresh.drop();
      await expect(db.ping()).rejects.toThrow();
    } finally {
      await db.close();
      await fresh.drop();
    }
  });

  it('names host and database, never the password, when Postgres is unreachable', async () => {
    const open = openDatabase({
      url: 'postgres://someone:s3cret-pw@127.0.0.1:1/nowhere',
      schema: 'environments',
      entities: [EnvironmentEntity],
      migrations: environmentsMigrations,
      logger: testLogger(),
    });
    const error = await open.then(
      () => expect.unreachable('opened a database on port 1'),
      (error: unknown) => error as Error,
    );
    expect(error.message).toContain('127.0.0.1:1/nowhere');
    expect(error.message).not.toContain('s3cret-pw');
  });

  it('fails on a database that does not exist instead of creating it', async () => {
    const url = new URL(database.url);
    url.pathname = `${url.pathname}_missing`;
    await expect(openEnvironments(url.toString())).rejects.toThrow(/does not exist/);
    const db = await openEnvironments(database.url);
    try {
      const rows = await db
        .em()
        .getConnection()
        .execute('select datname from pg_database where datname = ?', [url.pathname.slice(1)]);
      expect(rows).toEqual([]);
    } finally {
      await db.close();
    }
  });
});
