import {
  Code,
  ConnectError,
  ErrorInfoSchema,
  type Execution,
  ExecutionStatus,
  Runtime,
  type Session,
  SessionEndReason,
  SessionStatus,
} from '@assist-tee/client';
import { collectEvents, expectNothingLabelled, uniqueSuffix } from '@assist-tee/testing';
import { fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  handlerModules,
  NAMED_RUNTIMES,
  rejection,
  type ProcessTestBed,
  type ServiceProcess,
  startProcessTestBed,
  stopService,
  useTestStack,
} from '../src/index.js';

const QUOTA_OPEN_SESSIONS = 3;
const MAX_QUEUED_CALLS = 4;
const polling = { timeout: 15_000, interval: 100 };

const reasonOf = (error: ConnectError) => error.findDetails(ErrorInfoSchema)[0]?.reason;
const json = (execution: Execution | undefined) => toJson(ValueSchema, execution!.result!);

// One sandbox kept per session: state persists between calls, calls take turns, and every way
// a session ends (asked, idle, a fatal call, its environment deleted, its instance killed) is
// stored with its reason and leaves no container behind.
describe('sessions', () => {
  const tee = useTestStack({
    TEE_QUOTA_OPEN_SESSIONS: String(QUOTA_OPEN_SESSIONS),
    TEE_SESSION_MAX_QUEUED_CALLS: String(MAX_QUEUED_CALLS),
    // Cold sandboxes only: each carries its session's id, and no warm one refills behind it.
    TEE_POOL_MAX_PER_ENVIRONMENT: '0',
  });

  /**
   * A READY environment and a session on it, of a tenant of its own (each tenant has only
   * TEE_QUOTA_OPEN_SESSIONS); `done` ends both.
   */
  async function open(
    modules: { modules: Record<string, string>; mainModule: string },
    options: {
      runtime?: Runtime;
      memoryMb?: number;
      idleTimeoutMs?: number;
      /** Without automatic request_ids: no idempotency round trip before a call's turn. */
      retry?: false;
    } = {},
  ) {
    const client = await tee.clientOf(`sessions-${uniqueSuffix()}`, { retry: options.retry });
    const { environment } = await client.environments.createEnvironment({
      ...modules,
      runtime: options.runtime ?? Runtime.DENO,
    });
    const { session } = await client.sessions.createSession({
      environmentId: environment!.id,
      limits: { memoryMb: options.memoryMb ?? 0 },
      idleTimeoutMs: options.idleTimeoutMs ?? 0,
    });
    expect(session!.status).toBe(SessionStatus.ACTIVE);
    const sessionId = session!.id;
    const environmentId = environment!.id;
    return {
      client,
      session: session!,
      environmentId,
      call: (data: JsonValue = null, timeoutMs = 0) =>
        client.executions
          .execute({ sessionId, data: fromJson(ValueSchema, data), limits: { timeoutMs } })
          .then(({ execution }) => execution!),
      snippet: (code: string) =>
        client.executions.execute({ sessionId, code }).then(({ execution }) => execution!),
      get: () => client.sessions.getSession({ id: sessionId }).then(({ session }) => session!),
      async done() {
        await client.sessions.endSession({ id: sessionId });
        // A test may have deleted it already.
        await client.environments.deleteEnvironment({ id: environmentId }).catch((error) => {
          if (ConnectError.from(error).code !== Code.NotFound) throw error;
        });
      },
    };
  }

  /** No container with these labels is left (its environment's volume stays with it). */
  const expectNoSandbox = (labels: { sessionId?: string; environmentId?: string }) =>
    vi.waitFor(async () => {
      const left = await tee.stack.process.infrastructure.sandbox.listContainers(labels);
      if (left.length > 0) throw new Error(`containers left: ${JSON.stringify(labels)}`);
    }, polling);

  /** Polls the session until it has ended, and returns it. */
  const ended = (get: () => Promise<Session>): Promise<Session> =>
    vi.waitFor(async () => {
      const session = await get();
      if (session.status !== SessionStatus.ENDED)
        throw new Error(`session ${session.id} is active`);
      return session;
    }, polling);

  describe.each(NAMED_RUNTIMES)('on %s', (_, runtime) => {
    describe.concurrent('a session', () => {
      it('keeps module state, globalThis and /tmp from call to call, and runs snippets in it', async () => {
        const s = await open(
          {
            modules: {
              'main.ts': [
                "import { existsSync, readFileSync, writeFileSync } from 'node:fs';",
                'let count = 0;',
                'export function handler() {',
                '  count++;',
                '  const previous = (globalThis as any).previous ?? null;',
                '  (globalThis as any).previous = count;',
                "  const file = existsSync('/tmp/state') ? readFileSync('/tmp/state', 'utf8') : '';",
                "  writeFileSync('/tmp/state', file + count);",
                '  return { count, previous, file };',
                '}',
                '',
              ].join('\n'),
              'utils.ts': 'export const add = (a: number, b: number): number => a + b;\n',
            },
            mainModule: 'main.ts',
          },
          { runtime },
        );
        try {
          const calls: Execution[] = [];
          for (let i = 0; i < 3; i++) calls.push(await s.call());
          expect(calls.map(json)).toEqual([
            { count: 1, previous: null, file: '' },
            { count: 2, previous: 1, file: '1' },
            { count: 3, previous: 2, file: '12' },
          ]);
          const stored = await s.snippet(
            [
              "import { add } from './utils.ts';",
              '(globalThis as any).total = add(40, 2);',
              "console.log('stored');",
              'export default (globalThis as any).total;',
            ].join('\n'),
          );
          expect(stored.status).toBe(ExecutionStatus.SUCCEEDED);
          expect(json(stored)).toBe(42);
          expect(stored.logs.map((log) => log.message)).toEqual(['stored']);
          const doubled = await s.snippet('export default (globalThis as any).total * 2;');
          expect(json(doubled)).toBe(84);

          const all = [...calls, stored, doubled];
          for (const execution of all) {
            expect(execution).toMatchObject({ sessionId: s.session.id, warm: true });
          }
          const { executions } = await s.client.executions.listExecutions({
            sessionId: s.session.id,
          });
          expect(executions.map((execution) => execution.id)).toEqual(
            all.map((execution) => execution.id).reverse(),
          );
          expect(Number((await s.get()).callCount)).toBe(5);
        } finally {
          await s.done();
        }
        await expectNoSandbox({ sessionId: s.session.id });
      });

      it('ends with CALL_TIMEOUT when a call times out, and refuses the next call', async () => {
        const s = await open(handlerModules('while (true) {}'), { runtime });
        try {
          const execution = await s.call(null, 1000);
          expect(execution.status).toBe(ExecutionStatus.TIMEOUT);
          const session = await ended(s.get);
          expect(session).toMatchObject({
            endReason: SessionEndReason.CALL_TIMEOUT,
            endExecutionId: execution.id,
          });
          const refused = await rejection(s.call());
          expect(refused.code).toBe(Code.FailedPrecondition);
          expect(reasonOf(refused)).toBe('SESSION_ENDED');
          expect(refused.rawMessage).toContain('CALL_TIMEOUT');
          await expectNoSandbox({ environmentId: s.environmentId });
        } finally {
          await s.done();
        }
      });
    });
  });

  describe.concurrent('on Deno', () => {
    it('ends with OOM when a call runs its sandbox out of memory', async () => {
      const s = await open(
        handlerModules(
          'const hog = []; while (true) hog.push(new Uint8Array(8 * 1024 * 1024).fill(1));',
        ),
        { memoryMb: 128 },
      );
      try {
        const execution = await s.call(null, 30_000);
        expect(execution.status).toBe(ExecutionStatus.OOM);
        expect(await ended(s.get)).toMatchObject({
          endReason: SessionEndReason.OOM,
          endExecutionId: execution.id,
        });
        await expectNoSandbox({ environmentId: s.environmentId });
      } finally {
        await s.done();
      }
    });

    it('EndSession ends it as REQUESTED, again returns it unchanged, and calls are refused', async () => {
      const s = await open(handlerModules('return 1;'));
      try {
        const { session } = await s.client.sessions.endSession({ id: s.session.id });
        expect(session).toMatchObject({
          status: SessionStatus.ENDED,
          endReason: SessionEndReason.REQUESTED,
        });
        const { session: again } = await s.client.sessions.endSession({ id: s.session.id });
        expect(again).toEqual(session);
        const refused = await rejection(s.call());
        expect(refused.code).toBe(Code.FailedPrecondition);
        expect(reasonOf(refused)).toBe('SESSION_ENDED');
        await expectNoSandbox({ sessionId: s.session.id });
      } finally {
        await s.done();
      }
    });

    it('does not exist for another tenant', async () => {
      const s = await open(handlerModules('return 1;'));
      try {
        const other = await tee.clientOf('other-tenant');
        const id = s.session.id;
        const codes = await Promise.all([
          rejection(other.sessions.getSession({ id })),
          rejection(other.sessions.endSession({ id })),
          rejection(other.executions.execute({ sessionId: id })),
        ]);
        expect(codes.map((error) => Code[error.code])).toEqual([
          'NotFound',
          'NotFound',
          'NotFound',
        ]);
        const { sessions } = await other.sessions.listSessions({});
        expect(sessions.map((session) => session.id)).not.toContain(id);
        // Still the owner's, untouched.
        expect((await s.get()).status).toBe(SessionStatus.ACTIVE);
        expect(json(await s.call())).toBe(1);
      } finally {
        await s.done();
      }
    });

    it(`refuses a tenant's session past TEE_QUOTA_OPEN_SESSIONS until one ends`, async () => {
      const client = await tee.clientOf('session-quota');
      const { environment } = await client.environments.createEnvironment({
        ...handlerModules('return 1;'),
        runtime: Runtime.DENO,
      });
      const environmentId = environment!.id;
      const opened: string[] = [];
      try {
        for (let i = 0; i < QUOTA_OPEN_SESSIONS; i++) {
          const { session } = await client.sessions.createSession({ environmentId });
          opened.push(session!.id);
        }
        const refused = await rejection(client.sessions.createSession({ environmentId }));
        expect(refused.code).toBe(Code.ResourceExhausted);
        expect(reasonOf(refused)).toBe('TENANT_QUOTA_OPEN_SESSIONS');
        await client.sessions.endSession({ id: opened[0]! });
        const { session } = await client.sessions.createSession({ environmentId });
        opened.push(session!.id);
        expect(session!.status).toBe(SessionStatus.ACTIVE);
      } finally {
        await Promise.all(opened.map((id) => client.sessions.endSession({ id })));
        await client.environments.deleteEnvironment({ id: environmentId });
      }
      await expectNoSandbox({ environmentId });
    });

    it('CreateSession with a request_id starts one session however often it is retried', async () => {
      const client = await tee.clientOf(`session-retry-${uniqueSuffix()}`);
      const { environment } = await client.environments.createEnvironment({
        ...handlerModules('return 1;'),
        runtime: Runtime.DENO,
      });
      const environmentId = environment!.id;
      const requestId = `session-${uniqueSuffix()}`;
      try {
        const [first, second] = await Promise.all([
          client.sessions.createSession({ environmentId, requestId }),
          client.sessions.createSession({ environmentId, requestId }),
        ]);
        const again = await client.sessions.createSession({ environmentId, requestId });
        expect(second.session!.id).toBe(first.session!.id);
        expect(again.session!.id).toBe(first.session!.id);
        const { sessions } = await client.sessions.listSessions({ environmentId });
        expect(sessions.map((session) => session.id)).toEqual([first.session!.id]);
        const changed = await rejection(
          client.sessions.createSession({ environmentId, requestId, idleTimeoutMs: 1_000 }),
        );
        expect(changed.code).toBe(Code.InvalidArgument);
        expect(changed.rawMessage).toMatch(/^request_id: was used with a different request/);
      } finally {
        await client.environments.deleteEnvironment({ id: environmentId });
      }
      await expectNoSandbox({ environmentId });
    });

    it('runs calls one at a time in arrival order, and refuses calls past a full queue', async () => {
      const s = await open(
        handlerModules(
          [
            'const seen = ((globalThis as any).seen ??= []);',
            'seen.push(event.data);',
            'await new Promise((resolve) => setTimeout(resolve, 400));',
            'return [...seen];',
          ].join('\n'),
        ),
        // A request_id costs a database round trip before the call takes its turn, which
        // could swap calls sent close together on a busy machine.
        { retry: false },
      );
      try {
        await s.get(); // Its key is checked and cached now, not by the first call.
        const inOrder = await Promise.all(
          Array.from({ length: MAX_QUEUED_CALLS }, async (_, i) => {
            // 60 ms apart: all sent while the first call still runs (400 ms).
            await new Promise((resolve) => setTimeout(resolve, i * 60));
            return s.call(i);
          }),
        );
        expect(inOrder.map(json)).toEqual([[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]);

        const burst = await Promise.allSettled(
          Array.from({ length: 2 * MAX_QUEUED_CALLS }, (_, i) => s.call(10 + i)),
        );
        const refused = burst.flatMap((outcome) =>
          outcome.status === 'rejected' ? [ConnectError.from(outcome.reason)] : [],
        );
        const answered = burst.flatMap((outcome) =>
          outcome.status === 'fulfilled' ? [outcome.value] : [],
        );
        expect(refused.length).toBeGreaterThan(0);
        expect(answered.length).toBeGreaterThan(0);
        expect(answered.length).toBeLessThanOrEqual(MAX_QUEUED_CALLS);
        for (const error of refused) {
          expect(error.code).toBe(Code.ResourceExhausted);
          expect(reasonOf(error)).toBe('SESSION_QUEUE_FULL');
        }
        for (const execution of answered) expect(execution.status).toBe(ExecutionStatus.SUCCEEDED);
      } finally {
        await s.done();
      }
    });

    it('ends an idle session as IDLE_TIMEOUT', async () => {
      const s = await open(handlerModules('return 1;'), { idleTimeoutMs: 1000 });
      try {
        await new Promise((resolve) => setTimeout(resolve, 2500));
        const session = await s.get();
        expect(session).toMatchObject({
          status: SessionStatus.ENDED,
          endReason: SessionEndReason.IDLE_TIMEOUT,
        });
        await expectNoSandbox({ sessionId: s.session.id });
      } finally {
        await s.done();
      }
    });

    it('ends an ACTIVE session as ENVIRONMENT_DELETED when its environment is deleted', async () => {
      const s = await open(handlerModules('return 1;'));
      try {
        await s.client.environments.deleteEnvironment({ id: s.environmentId });
        expect(await ended(s.get)).toMatchObject({
          endReason: SessionEndReason.ENVIRONMENT_DELETED,
        });
        await expectNoSandbox({ sessionId: s.session.id });
      } finally {
        await s.done();
      }
    });

    it('names the field of a bad request, and does not know a session that never was', async () => {
      const s = await open(handlerModules('return 1;'));
      try {
        const tooLong = await rejection(
          s.client.sessions.createSession({
            environmentId: s.environmentId,
            idleTimeoutMs: tee.stack.config.sessions.maxima.idleTimeoutMs + 1,
          }),
        );
        expect(tooLong.code).toBe(Code.InvalidArgument);
        expect(tooLong.rawMessage).toMatch(/^idle_timeout_ms: /);

        const both = await rejection(
          s.client.executions.execute({
            sessionId: s.session.id,
            data: fromJson(ValueSchema, { a: 1 }),
            code: 'export default 1;',
          }),
        );
        expect(both.code).toBe(Code.InvalidArgument);
        expect(both.rawMessage).toMatch(/^data: /);

        const resized = await rejection(
          s.client.executions.execute({
            sessionId: s.session.id,
            limits: { memoryMb: s.session.limits!.memoryMb + 64 },
          }),
        );
        expect(resized.code).toBe(Code.InvalidArgument);
        expect(resized.rawMessage).toMatch(/^limits\.memory_mb: /);

        const unknown = crypto.randomUUID();
        for (const call of [
          s.client.sessions.getSession({ id: unknown }),
          s.client.executions.execute({ sessionId: unknown }),
        ]) {
          expect((await rejection(call)).code).toBe(Code.NotFound);
        }
        // None of these touched the session.
        expect(json(await s.call())).toBe(1);
      } finally {
        await s.done();
      }
    });

    it('publishes session.created and session.ended with its id and end reason', async () => {
      const { servers, subjectPrefix } = tee.stack.config.nats;
      const events = await collectEvents(servers, subjectPrefix);
      try {
        const s = await open(handlerModules('return 1;'));
        await s.done();
        const id = s.session.id;
        const about = (type: string) =>
          events.events.filter(
            (event) =>
              event.type === type && 'session' in event.message && event.message.session?.id === id,
          );
        await events.waitFor(
          () => about('session.created').length > 0 && about('session.ended').length > 0,
          15_000,
        );
        const [created] = about('session.created');
        const [endedEvent] = about('session.ended');
        expect(created!.message).toMatchObject({
          session: { id, status: SessionStatus.ACTIVE, tenantId: s.session.tenantId },
        });
        expect(endedEvent!.message).toMatchObject({
          session: { id, status: SessionStatus.ENDED, endReason: SessionEndReason.REQUESTED },
        });
      } finally {
        await events.stop();
      }
    });
  });
});

// Real processes, a real SIGKILL: the restarted instance ends what the killed one held.
describe('sessions of a killed instance', () => {
  let bed: ProcessTestBed;
  let environments: ServiceProcess;
  beforeAll(async () => {
    bed = await startProcessTestBed();
    environments = await bed.start('environments');
  });
  afterAll(async () => {
    await bed?.tearDown();
  });

  it('end as LOST on restart, and their sandboxes are removed', async () => {
    const executionEnv = { TEE_ENVIRONMENTS_URL: environments.url };
    const killed = await bed.start('execution', executionEnv);
    const { environment } = await bed.client(environments.url).environments.createEnvironment({
      ...handlerModules('return 1;'),
      runtime: Runtime.DENO,
    });
    const { session } = await bed.client(killed.url).sessions.createSession({
      environmentId: environment!.id,
    });
    const id = session!.id;
    expect(await bed.sandbox.listContainers({ sessionId: id })).toHaveLength(1);
    expect(await stopService(killed, 'SIGKILL')).toBe(null);

    const restarted = await bed.start('execution', executionEnv);
    const { session: after } = await bed.client(restarted.url).sessions.getSession({ id });
    expect(after).toMatchObject({
      status: SessionStatus.ENDED,
      endReason: SessionEndReason.LOST,
    });
    await expectNothingLabelled(bed.sandbox, { sessionId: id });
    await bed.client(environments.url).environments.deleteEnvironment({ id: environment!.id });
  });
});
