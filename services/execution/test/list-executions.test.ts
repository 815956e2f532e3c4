import { randomUUID } from 'node:crypto';
import { createClient, createRouterTransport } from '@connectrpc/connect';
import { loadConfig } from '@assist-tee/config';
import { type Database, ExecutionEntity, executionSchema, openDatabase } from '@assist-tee/db';
import { createLogger } from '@assist-tee/logger';
import { ExecutionService, ExecutionStatus } from '@assist-tee/proto';
import { ANONYMOUS_TENANT, type ApiKeys, authInterceptor } from '@assist-tee/server';
import { createTestDatabase, type TestDatabase } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecutionDeps } from '../src/deps.js';
import { listExecutions } from '../src/rpc/list-executions.js';

// Real Postgres: the SQL a listing issues, as MikroORM logs it at debug level.
describe('ListExecutions', () => {
  const queries: string[] = [];
  const logger = createLogger(
    { level: 'debug' },
    {
      hooks: {
        logMethod(args) {
          const [fields] = args as unknown[];
          if (typeof fields === 'object' && fields !== null && 'query' in fields) {
            queries.push(String(fields.query));
          }
        },
      },
    },
  );
  let database: TestDatabase;
  let db: Database;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openDatabase({ url: database.url, ...executionSchema, logger });
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  it('reads neither logs nor results, which it does not return', async () => {
    const environmentId = randomUUID();
    const em = db.em();
    const big = 'x'.repeat(1024 * 1024);
    em.create(ExecutionEntity, {
      id: randomUUID(),
      environmentId,
      tenantId: ANONYMOUS_TENANT,
      status: 'SUCCEEDED',
      result: big,
      error: null,
      logs: [{ level: 'INFO', message: big, time: Date.now() }],
      outputTruncated: false,
      exitCode: 0,
      durationMs: 5,
      limits: { timeoutMs: 1000, memoryMb: 128, maxOutputBytes: 1024, cpuMillicores: 100 },
      warm: false,
      instanceId: 'me',
      createdAt: new Date(),
      finishedAt: new Date(),
    });
    await em.flush();
    const deps = { config: loadConfig({}), db } as ExecutionDeps;
    const transport = createRouterTransport(
      ({ service }) => service(ExecutionService, { listExecutions: listExecutions(deps) }),
      // A call without a key is the tenant "dev"; no key is looked up.
      { router: { interceptors: [authInterceptor({} as ApiKeys, true)] } },
    );
    queries.length = 0;
    const { executions } = await createClient(ExecutionService, transport).listExecutions({
      environmentId,
    });
    expect(executions.map((execution) => [execution.status, execution.durationMs])).toEqual([
      [ExecutionStatus.SUCCEEDED, 5],
    ]);
    const selects = queries.filter((query) => /from "execution"\."execution"/.test(query));
    expect(selects).toHaveLength(1);
    // Not `select e0.*`: the columns it returns, by name.
    expect(selects[0]).not.toMatch(/\.\*|"logs"|"result"/);
    expect(selects[0]).toContain('"status"');
  });
});
