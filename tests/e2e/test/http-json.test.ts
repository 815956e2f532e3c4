import { collectEvents } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows, startTestStack, sumExample, type TestStack } from '../src/index.js';

// Plain fetch with JSON: what a caller without any generated client does.
describe('setup → execute → list → delete with Connect JSON over plain HTTP', () => {
  let stack: TestStack;
  let events: Awaited<ReturnType<typeof collectEvents>>;

  beforeAll(async () => {
    stack = await startTestStack();
    events = await collectEvents(stack.config.nats.servers, stack.config.nats.subjectPrefix);
  });
  afterAll(async () => {
    await events?.stop();
    await stack?.stop();
  });

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies as a caller sees them
  const call = async (method: string, body: unknown): Promise<{ status: number; body: any }> => {
    const response = await fetch(`${stack.url}/assist_tee.v1.${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.apiKey}` },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: await response.json() };
  };

  it('runs the README example end to end', async () => {
    const created = await call('EnvironmentService/CreateEnvironment', {
      ...sumExample,
      runtime: 'RUNTIME_DENO',
    });
    expect(created.status).toBe(200);
    const environment = created.body.environment;
    expect(environment).toMatchObject({
      status: 'ENVIRONMENT_STATUS_READY',
      runtime: 'RUNTIME_DENO',
      mainModule: 'main.ts',
      modulePaths: ['main.ts', 'utils.ts'],
    });

    const inputs = [
      [1, 2],
      [40, 2],
      [-7, 7.5],
    ] as const;
    const runs = await Promise.all(
      inputs.map(([a, b]) =>
        call('ExecutionService/Execute', { environmentId: environment.id, data: { a, b } }),
      ),
    );
    runs.forEach((run, i) => {
      const [a, b] = inputs[i]!;
      expect(run.status).toBe(200);
      expect(run.body.execution).toMatchObject({
        environmentId: environment.id,
        status: 'EXECUTION_STATUS_SUCCEEDED',
        result: { sum: a + b },
      });
      expect(run.body.execution.logs[0]).toMatchObject({
        level: 'LOG_LEVEL_INFO',
        message: `adding ${a} ${b}`,
      });
    });
    const executionIds = runs.map((run) => run.body.execution.id as string);

    const fetched = await call('ExecutionService/GetExecution', { id: executionIds[0] });
    expect(fetched.body.execution).toMatchObject({ id: executionIds[0], result: { sum: 3 } });

    const listed = await call('ExecutionService/ListExecutions', { environmentId: environment.id });
    expect(listed.body.executions.map((e: { id: string }) => e.id).sort()).toEqual(
      [...executionIds].sort(),
    );
    const environments = await call('EnvironmentService/ListEnvironments', {});
    expect(environments.body.environments.map((e: { id: string }) => e.id)).toContain(
      environment.id,
    );

    const rows = await queryRows<{ id: string; status: string }>(
      stack.config.databaseUrl,
      'select id, status from execution.execution where environment_id = $1',
      [environment.id],
    );
    expect(rows.map((row) => row.status)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);
    const [stored] = await queryRows<{ status: string }>(
      stack.config.databaseUrl,
      'select status from environments.environment where id = $1',
      [environment.id],
    );
    expect(stored?.status).toBe('READY');

    const deleted = await call('EnvironmentService/DeleteEnvironment', { id: environment.id });
    expect(deleted.body.environment.status).toBe('ENVIRONMENT_STATUS_DELETED');
    const afterDelete = await call('ExecutionService/Execute', {
      environmentId: environment.id,
      data: { a: 1, b: 1 },
    });
    expect(afterDelete.status).toBe(404);
    expect(afterDelete.body.code).toBe('not_found');

    await events.waitFor(
      (received) => received.some((e) => e.type === 'environment.deleted'),
      10_000,
    );
    const seen = events.events.map((e) => e.type);
    expect(seen.filter((t) => t === 'environment.created')).toHaveLength(1);
    expect(seen.filter((t) => t === 'execution.started')).toHaveLength(3);
    expect(seen.filter((t) => t === 'execution.finished')).toHaveLength(3);
    expect(seen.filter((t) => t === 'environment.deleted')).toHaveLength(1);
    for (const event of events.events) expect(event.message.eventId).not.toBe('');

    const { sandbox } = stack.process.infrastructure;
    expect(await sandbox.listContainers({ environmentId: environment.id })).toEqual([]);
    expect(await sandbox.listVolumes({ environmentId: environment.id })).toEqual([]);
  });

  it('answers unknown ids with NotFound and serves /healthz', async () => {
    const missing = await call('EnvironmentService/GetEnvironment', { id: 'no-such-id' });
    expect(missing.status).toBe(404);
    expect(missing.body.message).toContain('no-such-id');
    const health = await fetch(`${stack.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({
      status: 'ok',
      checks: {
        nats: 'ok',
        docker: 'ok',
        'postgres:environments': 'ok',
        'postgres:execution': 'ok',
        'postgres:reaper': 'ok',
      },
    });
  });
});
