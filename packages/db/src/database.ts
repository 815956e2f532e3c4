import type { AnyEntity, EntityClass, EntitySchema, MigrationObject } from '@mikro-orm/core';
import { Migrator } from '@mikro-orm/migrations';
import { type EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from '@assist-tee/logger';
import { PinoOrmLogger } from './orm-logger.js';
import { TransactionSpans } from './transaction-spans.js';

export type DatabaseEntity = EntitySchema | EntityClass<AnyEntity>;

export interface DatabaseOptions {
  /** postgres://user:pass@host:port/db */
  url: string;
  /** The owning service's schema ('environments', 'execution'); its migration table lives there. */
  schema: string;
  /** That service's entities only. */
  entities: readonly DatabaseEntity[];
  /** That service's migrations, in order, listed explicitly so they run from dist as from src. */
  migrations: readonly MigrationObject[];
  /** ORM warnings and errors go here; queries too when its level is debug. */
  logger: Logger;
}

export interface Database {
  readonly orm: MikroORM;
  /** A fresh EntityManager for one request or one message. */
  em(): EntityManager;
  /** `select 1` — throws when Postgres is unreachable. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]*$/;
const MIGRATIONS_TABLE = 'mikro_orm_migrations';

/**
 * Connects, creates the schema if missing and applies pending migrations (tracked in the
 * schema's own migration table). Fails with a message naming the URL's host and database,
 * never its password, when Postgres cannot be reached.
 */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  const target = describeUrl(options.url);
  if (!SCHEMA_NAME.test(options.schema)) {
    throw new Error(`invalid database schema name ${JSON.stringify(options.schema)}`);
  }
  const logger = options.logger.child({ component: 'db', schema: options.schema });
  const debugMode = logger.isLevelEnabled('debug') ? (['query', 'info'] as const) : false;

  let orm: MikroORM | undefined;
  try {
    orm = await MikroORM.init({
      clientUrl: options.url,
      schema: options.schema,
      // Each service's ORM keeps its own request and transaction context: in one process (the
      // standalone server) a service called in memory from inside another's transaction must
      // not pick up that transaction's entity manager.
      contextName: options.schema,
      entities: [...options.entities],
      subscribers: [new TransactionSpans(options.schema)],
      extensions: [Migrator],
      migrations: {
        migrationsList: [...options.migrations],
        tableName: MIGRATIONS_TABLE,
        // Migrations are hand-written and reviewed: no snapshot files next to the process.
        snapshot: false,
        transactional: true,
        allOrNothing: true,
      },
      debug: debugMode === false ? false : [...debugMode],
      loggerFactory: (loggerOptions) => new PinoOrmLogger(logger, loggerOptions.debugMode ?? false),
      colors: false,
      // A mistyped database name must fail, not quietly create a new empty database.
      ensureDatabase: false,
    });
    // init() connects lazily; fail here, with the reason, rather than on the first query.
    await orm.connect();
    const connection = await orm.checkConnection();
    if (!connection.ok) throw connection.error ?? new Error(connection.reason);
    assertEntitySchemas(orm, options.schema);
    const applied = await migrate(orm, options.schema);
    if (applied.length > 0) logger.info({ migrations: applied }, 'migrations applied');
  } catch (error) {
    await orm?.close(true).catch(() => undefined);
    throw new Error(
      `cannot open the database ${target} (schema ${options.schema}): ${redact(error, options.url)}`,
      { cause: error },
    );
  }

  const opened = orm;
  return {
    orm: opened,
    em: () => opened.em.fork(),
    ping: async () => {
      await opened.em.getConnection().execute('select 1');
    },
    close: () => opened.close(),
  };
}

/**
 * Creates the schema and applies pending migrations. Replicas starting together take turns
 * (an advisory lock held by a transaction of its own), so the later ones find nothing to do.
 */
async function migrate(orm: MikroORM, schema: string): Promise<string[]> {
  const connection = orm.em.getConnection();
  return connection.transactional(async (lock) => {
    await connection.execute(
      'select pg_advisory_xact_lock(hashtext(?))',
      [`assist_tee:migrate:${schema}`],
      'all',
      lock,
    );
    // Outside the lock's transaction: the migrations, on other connections, must see it.
    await connection.execute(`create schema if not exists "${schema}"`);
    const applied = await orm.migrator.up();
    return applied.map((migration) => migration.name);
  });
}

/** host:port/db of a Postgres URL, for messages; throws on something that is not one. */
function describeUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('the database URL is not a URL (expected postgres://user:pass@host:port/db)');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new Error(`the database URL must start with postgres://, not ${parsed.protocol}//`);
  }
  return `postgres://${parsed.host}${parsed.pathname}`;
}

/** The error's message with the URL's password blanked, in case a driver echoes it. */
function redact(error: unknown, url: string): string {
  const message = error instanceof Error ? error.message : String(error);
  const password = decodeURIComponent(new URL(url).password);
  return password.length > 0 ? message.replaceAll(password, '***') : message;
}

/** Each service's tables live in its own schema: an entity elsewhere is a wiring mistake. */
function assertEntitySchemas(orm: MikroORM, schema: string): void {
  for (const meta of orm.getMetadata().getAll().values()) {
    if (meta.virtual || meta.embeddable) continue;
    if (meta.schema !== schema) {
      throw new Error(
        `entity ${meta.className} is in schema ${String(meta.schema)}, expected ${schema}`,
      );
    }
  }
}
