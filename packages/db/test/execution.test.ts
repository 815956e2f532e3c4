import { randomUUID } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExecutionEntity, type Database, type JsonValue } from '../src/index.js';
import { openExecution } from './support.js';

describe('ExecutionEntity', () => {
  let database: TestDatabase;
  let db: Database;
  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openExecution(database.url);
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  const newRow = (result: JsonValue) => ({
    id: randomUUID(),
    environmentId: randomUUID(),
    tenantId: 'acme',
    status: 'SUCCEEDED' as const,
    result,
    error: null,
    logs: [{ level: 'INFO' as const, message: 'adding 1 2', time: 1_790_000_000_123 }],
    outputTruncated: false,
    exitCode: 0,
    durationMs: 12,
    limits: { timeoutMs: 5000, memoryMb: 128, maxOutputBytes: 1_048_576, cpuMillicores: 500 },
    instanceId: 'instance-a',
    createdAt: new Date(),
    finishedAt: new Date(),
  });

  // Strings that look like other JSON are the ones a careless JSON column mangles.
  const results: JsonValue[] = [
    'text',
    '',
    // jsonb cannot hold U+0000; a handler may return it (migration 0004).
    'a\u0000b',
    { nul: '\u0000' },
    '3',
    'true',
    'null',
    '{"a":1}',
    '[1,2]',
    3,
    0,
    -1.5,
    true,
    false,
    null,
    { a: 1 },
    { nested: { list: [1, 'two', null, { deep: true }] }, 'odd key': 'ünïcode ✓' },
    [1, 2],
    [],
    {},
  ];

  it('round-trips a result of every JSON type exactly', async () => {
    const em = db.em();
    const rows = results.map((result) => em.create(ExecutionEntity, newRow(result)));
    await em.flush();

    const read = db.em();
    for (const [i, row] of rows.entries()) {
      const found = await read.findOneOrFail(ExecutionEntity, { id: row.id });
      expect(found.result, JSON.stringify(results[i])).toStrictEqual(results[i]);
    }
    // The column holds the value itself, so SQL can reach into it.
    const [raw] = await read
      .getConnection()
      .execute<{ sum: string | null }[]>(
        `select "result" ->> 'a' as sum from "execution"."execution" where "id" = ?`,
        [rows[results.findIndex((r) => JSON.stringify(r) === '{"a":1}')]!.id],
      );
    expect(raw?.sum).toBe('1');
  });

  it('writes a changed result, whatever its type becomes', async () => {
    const em = db.em();
    const changes: [JsonValue, JsonValue][] = [
      ['3', 3],
      [3, '3'],
      [null, 'null'],
      ['null', null],
      [{ a: 1 }, '{"a":1}'],
      [
        [1, 2],
        [1, 2, 3],
      ],
    ];
    const rows = changes.map(([before]) => em.create(ExecutionEntity, newRow(before)));
    await em.flush();
    rows.forEach((row, i) => {
      row.result = changes[i]![1];
    });
    await em.flush();

    const read = db.em();
    for (const [i, row] of rows.entries()) {
      const found = await read.findOneOrFail(ExecutionEntity, { id: row.id });
      expect(found.result).toStrictEqual(changes[i]![1]);
    }
  });

  it('round-trips the other columns and defaults warm to false', async () => {
    const data = {
      ...newRow(null),
      status: 'HANDLER_ERROR' as const,
      error: {
        name: 'TypeError',
        message: 'x is not a function \u0000',
        stack: 'TypeError: …\n  at main.ts:3',
      },
      logs: [
        { level: 'DEBUG' as const, message: 'first', time: 1 },
        { level: 'ERROR' as const, message: 'second', time: 2 },
      ],
      outputTruncated: true,
      exitCode: null,
      durationMs: null,
      finishedAt: null,
      coldStartReason: 'EVICTED' as const,
      sessionId: randomUUID(),
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    };
    const em = db.em();
    em.create(ExecutionEntity, data);
    await em.flush();

    const found = await db.em().findOneOrFail(ExecutionEntity, { id: data.id });
    expect({ ...found }).toEqual({ ...data, warm: false });
  });

  it("lists an environment's executions newest first, page by page", async () => {
    const environmentId = randomUUID();
    const base = Date.parse('2031-01-01T00:00:00Z');
    const em = db.em();
    const rows = Array.from({ length: 7 }, (_, i) =>
      em.create(ExecutionEntity, {
        ...newRow(i),
        environmentId,
        createdAt: new Date(base + Math.floor(i / 3) * 1000),
      }),
    );
    em.create(ExecutionEntity, newRow('another environment'));
    await em.flush();

    const seen: string[] = [];
    let cursor: ExecutionEntity | undefined;
    for (;;) {
      const page = await db.em().find(
        ExecutionEntity,
        {
          environmentId,
          ...(cursor && {
            $or: [
              { createdAt: { $lt: cursor.createdAt } },
              { createdAt: cursor.createdAt, id: { $lt: cursor.id } },
            ],
          }),
        },
        { orderBy: { createdAt: 'desc', id: 'desc' }, limit: 3 },
      );
      seen.push(...page.map((row) => row.id));
      cursor = page.at(-1);
      if (page.length < 3 || cursor === undefined) break;
    }
    const expected = [...rows]
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : -1))
      .map((row) => row.id);
    expect(seen).toEqual(expected);
  });
});
