import pg from 'pg';
import { uniqueSuffix } from './names.js';

const DEFAULT_ADMIN_URL = 'postgres://assist_tee:assist_tee@127.0.0.1:5432/assist_tee';

export interface TestDatabase {
  /** URL of the new, empty database. */
  url: string;
  /** Terminates its connections and drops it. */
  drop(): Promise<void>;
}

/**
 * A fresh database (`tee_test_<suffix>`) for one suite, created through
 * TEE_TEST_ADMIN_DATABASE_URL. Throws, never skips, when Postgres is not there.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = process.env.TEE_TEST_ADMIN_DATABASE_URL || DEFAULT_ADMIN_URL;
  const name = `tee_test_${uniqueSuffix()}`;
  await withAdmin(adminUrl, (client) => client.query(`create database "${name}"`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    // FORCE (Postgres 13+) ends the connections a test left open, in the same statement.
    drop: () =>
      withAdmin(adminUrl, async (client) => {
        await client.query(`drop database if exists "${name}" with (force)`);
      }),
  };
}

async function withAdmin<T>(adminUrl: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  try {
    await client.connect();
  } catch (error) {
    const { host, pathname } = new URL(adminUrl);
    throw new Error(
      `Postgres is not reachable at ${host}${pathname} (${(error as Error).message}); ` +
        'run `npm run bootstrap` to install and start it, or set TEE_TEST_ADMIN_DATABASE_URL',
      { cause: error },
    );
  }
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}
