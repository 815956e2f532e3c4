import pg from 'pg';

/** One query against a stack's database, for asserting what the services stored. */
export async function queryRows<T extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Sets an environment's status behind the services' back, as a crash or a replica would leave it. */
export async function setEnvironmentStatus(url: string, id: string, status: string): Promise<void> {
  await queryRows(url, 'update environments.environment set status = $1 where id = $2', [
    status,
    id,
  ]);
}
