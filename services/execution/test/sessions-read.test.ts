import { randomUUID } from 'node:crypto';
import { Code, ConnectError, createClient, createRouterTransport } from '@connectrpc/connect';
import { loadConfig } from '@assist-tee/config';
import {
  type Database,
  ExecutionEntity,
  executionSchema,
  openDatabase,
  SessionEntity,
  type SessionEndReasonName,
  type SessionStatusName,
} from '@assist-tee/db';
import { createLogger } from '@assist-tee/logger';
import {
  ExecutionService,
  SessionEndReason,
  SessionService,
  SessionStatus,
} from '@assist-tee/proto';
import { type ApiKeys, authInterceptor, bearer } from '@assist-tee/server';
import { createTestDatabase, type TestDatabase } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoreDeps, ExecutionDeps } from '../src/deps.js';
import { getSession } from '../src/rpc/get-session.js';
import { listExecutions } from '../src/rpc/list-executions.js';
import { listSessions } from '../src/rpc/list-sessions.js';
import { Sessions } from '../src/sessions.js';

const LIMITS = { timeoutMs: 1000, memoryMb: 128, maxOutputBytes: 4096, cpuMillicores: 100 };

// Real Postgres; the callers are told apart by key, as in production.
describe('GetSession, ListSessions and ListExecutions by session', () => {
  const keys = {
    verify: (key: string) =>
      Promise.resolve(
        key === 'services'
          ? { kind: 'service' as const }
          : key.startsWith('tenant-')
            ? { kind: 'tenant' as const, tenantId: key.slice('tenant-'.length) }
            : undefined,
      ),
  } as ApiKeys;
  let database: TestDatabase;
  let db: Database;
  let deps: ExecutionDeps;
  const clients = (key: string) => {
    const transport = createRouterTransport(
      ({ service }) => {
        service(SessionService, { getSession: getSession(deps), listSessions: listSessions(deps) });
        service(ExecutionService, { listExecutions: listExecutions(deps) });
      },
      {
        router: { interceptors: [authInterceptor(keys, false)] },
        transport: { interceptors: [bearer(key)] },
      },
    );
    return {
      sessions: createClient(SessionService, transport),
      executions: createClient(ExecutionService, transport),
    };
  };
  let start = Date.parse('2026-01-01T00:00:00Z');

  async function insertSession(
    fields: {
      tenantId?: string;
      environmentId?: string;
      status?: SessionStatusName;
      endReason?: SessionEndReasonName;
    } = {},
  ): Promise<SessionEntity> {
    const em = db.em();
    // One second apart, in insertion order: newest first is the reverse.
    const createdAt = new Date((start += 1000));
    const ended = fields.status === 'ENDED';
    const row = em.create(SessionEntity, {
      id: randomUUID(),
      environmentId: fields.environmentId ?? randomUUID(),
      tenantId: fields.tenantId ?? 'acme',
      status: fields.status ?? 'ACTIVE',
      limits: LIMITS,
      idleTimeoutMs: 300_000,
      maxLifetimeMs: 3_600_000,
      labels: { team: 'a' },
      endReason: ended ? (fields.endReason ?? 'REQUESTED') : null,
      endMessage: ended ? 'ended by the test' : null,
      endExecutionId: null,
      callCount: 2,
      warm: true,
      instanceId: 'me',
      containerId: 'c-1',
      createdAt,
      lastCallAt: new Date(createdAt.getTime() + 100),
      expiresAt: new Date(createdAt.getTime() + 3_600_000),
      endedAt: ended ? new Date(createdAt.getTime() + 200) : null,
    });
    await em.flush();
    return row;
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    db = await openDatabase({
      url: database.url,
      ...executionSchema,
      logger: createLogger({ level: 'warn' }),
    });
    const core = { config: loadConfig({}), db } as CoreDeps;
    // No session is live in this process: the rows are as stored.
    deps = { ...core, sessions: new Sessions(core) };
  });
  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  it('gets the caller’s own session, with every field', async () => {
    const row = await insertSession({ status: 'ENDED', endReason: 'IDLE_TIMEOUT' });
    const { session } = await clients('tenant-acme').sessions.getSession({ id: row.id });
    expect(session).toMatchObject({
      id: row.id,
      environmentId: row.environmentId,
      tenantId: 'acme',
      status: SessionStatus.ENDED,
      limits: { ...LIMITS, maxOutputBytes: 4096n },
      idleTimeoutMs: 300_000,
      maxLifetimeMs: 3_600_000,
      labels: { team: 'a' },
      endReason: SessionEndReason.IDLE_TIMEOUT,
      endMessage: 'ended by the test',
      endExecutionId: '',
      callCount: 2n,
      warm: true,
    });
    const ms = (t: { seconds: bigint; nanos: number } | undefined) =>
      t === undefined ? undefined : Number(t.seconds) * 1000 + t.nanos / 1e6;
    expect(ms(session?.createTime)).toBe(row.createdAt.getTime());
    expect(ms(session?.lastCallTime)).toBe(row.createdAt.getTime() + 100);
    expect(ms(session?.expireTime)).toBe(row.createdAt.getTime() + 3_600_000);
    expect(ms(session?.endTime)).toBe(row.createdAt.getTime() + 200);

    const active = await insertSession();
    const got = (await clients('tenant-acme').sessions.getSession({ id: active.id })).session;
    expect(got?.status).toBe(SessionStatus.ACTIVE);
    expect(got?.endReason).toBe(SessionEndReason.UNSPECIFIED);
    expect(got?.endTime).toBeUndefined();
  });

  it('answers NotFound for another tenant’s session and for a non-uuid id; the services key sees all', async () => {
    const row = await insertSession({ tenantId: 'acme' });
    for (const id of [row.id, 'not-a-uuid', randomUUID()]) {
      const error = await clients('tenant-other')
        .sessions.getSession({ id })
        .then(
          () => expect.unreachable(`got session ${id}`),
          (error: unknown) => ConnectError.from(error),
        );
      expect(error.code).toBe(Code.NotFound);
      expect(error.rawMessage).toContain(id);
    }
    const { session } = await clients('services').sessions.getSession({ id: row.id });
    expect(session?.tenantId).toBe('acme');
  });

  it('lists the caller’s sessions newest first, page by page, by environment and status', async () => {
    const tenant = `t${randomUUID().slice(0, 8)}`;
    const environmentId = randomUUID();
    const a = await insertSession({ tenantId: tenant, environmentId });
    const b = await insertSession({ tenantId: tenant, status: 'ENDED' });
    const c = await insertSession({ tenantId: tenant, environmentId, status: 'ENDED' });
    const d = await insertSession({ tenantId: tenant });
    await insertSession({ tenantId: 'someone-else', environmentId });
    const { sessions } = clients(`tenant-${tenant}`);
    const ids = async (request: Parameters<typeof sessions.listSessions>[0]) =>
      (await sessions.listSessions(request)).sessions.map((session) => session.id);

    expect(await ids({})).toEqual([d.id, c.id, b.id, a.id]);

    const first = await sessions.listSessions({ pageSize: 3 });
    expect(first.sessions.map((session) => session.id)).toEqual([d.id, c.id, b.id]);
    expect(first.nextPageToken).not.toBe('');
    const second = await sessions.listSessions({ pageSize: 3, pageToken: first.nextPageToken });
    expect(second.sessions.map((session) => session.id)).toEqual([a.id]);
    expect(second.nextPageToken).toBe('');

    expect(await ids({ environmentId })).toEqual([c.id, a.id]);
    expect(await ids({ status: SessionStatus.ACTIVE })).toEqual([d.id, a.id]);
    expect(await ids({ status: SessionStatus.ENDED })).toEqual([c.id, b.id]);
    expect(await ids({ environmentId, status: SessionStatus.ACTIVE })).toEqual([a.id]);
    expect(await ids({ environmentId: 'not-a-uuid' })).toEqual([]);
    // Another tenant sees none of them.
    expect(await clients('tenant-nobody').sessions.listSessions({})).toMatchObject({
      sessions: [],
    });
  });

  it('lists a session’s executions, newest first, without needing environment_id', async () => {
    const session = await insertSession();
    const em = db.em();
    const execution = (sessionId: string | null, tenantId = 'acme') =>
      em.create(ExecutionEntity, {
        id: randomUUID(),
        environmentId: session.environmentId,
        tenantId,
        sessionId,
        status: 'SUCCEEDED',
        result: null,
        error: null,
        logs: [],
        outputTruncated: false,
        exitCode: 0,
        durationMs: 1,
        limits: LIMITS,
        warm: true,
        instanceId: 'me',
        createdAt: new Date((start += 1000)),
        finishedAt: new Date(start),
      });
    const first = execution(session.id);
    execution(null);
    const second = execution(session.id);
    await em.flush();

    const { executions } = clients('tenant-acme');
    const listed = await executions.listExecutions({ sessionId: session.id });
    expect(listed.executions.map((e) => [e.id, e.sessionId])).toEqual([
      [second.id, session.id],
      [first.id, session.id],
    ]);
    const both = await executions.listExecutions({
      sessionId: session.id,
      environmentId: session.environmentId,
    });
    expect(both.executions).toHaveLength(2);
    // The environment's listing carries each execution's session (or none).
    const all = await executions.listExecutions({ environmentId: session.environmentId });
    expect(all.executions.map((e) => e.sessionId)).toEqual([session.id, '', session.id]);

    expect(
      (await clients('tenant-other').executions.listExecutions({ sessionId: session.id }))
        .executions,
    ).toEqual([]);
    expect((await executions.listExecutions({ sessionId: 'not-a-uuid' })).executions).toEqual([]);
    const error = await executions.listExecutions({}).then(
      () => expect.unreachable('listed without environment_id or session_id'),
      (error: unknown) => ConnectError.from(error),
    );
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toContain('environment_id');
  });
});
