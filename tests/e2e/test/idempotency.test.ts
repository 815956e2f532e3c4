import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  type AssistTeeClient,
  createAssistTeeClient,
  EnvironmentStatus,
  type ExecuteStreamResponse,
  Runtime,
} from '@assist-tee/client';
import { waitForRunning } from '@assist-tee/testing';
import { fromJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  handlerModules,
  type ProcessTestBed,
  queryRows,
  type ServiceProcess,
  startProcessTestBed,
  stopService,
  sumExample,
  useTestStack,
} from '../src/index.js';

const failureOf = (call: Promise<unknown>) =>
  call.then(
    () => 'ok',
    (error: unknown) => {
      const { code, rawMessage } = ConnectError.from(error);
      return `${Code[code]}: ${rawMessage}`;
    },
  );

const pythonClient = fileURLToPath(new URL('../clients/python/', import.meta.url));
const sumEnvironment = { ...sumExample, runtime: Runtime.DENO };
const sumData = fromJson(ValueSchema, { a: 2, b: 40 });

/** An ExecuteStream call's messages: the log lines, then the execution. */
async function streamed(messages: AsyncIterable<ExecuteStreamResponse>) {
  const logs: string[] = [];
  for await (const { event } of messages) {
    if (event.case === 'log') logs.push(event.value.message);
    if (event.case === 'execution') return { logs, execution: event.value };
  }
  throw new Error('the stream ended without its execution');
}

describe('request_id: a retry gets the first answer, and the work happens once', () => {
  const tee = useTestStack({ TEE_QUOTA_ENVIRONMENTS: '2' });
  const countRows = async (sql: string, params: unknown[]) => {
    const [row] = await queryRows<{ count: string }>(tee.stack.config.databaseUrl, sql, params);
    return Number(row?.count);
  };
  const environmentRows = (tenantId: string) =>
    countRows('select count(*) from environments.environment where tenant_id = $1', [tenantId]);
  const executionRows = (environmentId: string) =>
    countRows('select count(*) from execution.execution where environment_id = $1', [
      environmentId,
    ]);

  it('CreateEnvironment: a retry returns the same environment and is not counted against the quota', async () => {
    const client = await tee.clientOf('idem-create');
    const requestId = randomUUID();
    const first = await client.environments.createEnvironment({ ...sumEnvironment, requestId });
    const again = await client.environments.createEnvironment({ ...sumEnvironment, requestId });
    expect(again.environment?.id).toBe(first.environment?.id);
    expect(again.environment?.status).toBe(EnvironmentStatus.READY);
    expect(await environmentRows('idem-create')).toBe(1);

    // A quota of 2: the retry did not take the second place, and a retry still answers once
    // the quota is full.
    await client.environments.createEnvironment({ ...sumEnvironment });
    expect(await failureOf(client.environments.createEnvironment({ ...sumEnvironment }))).toMatch(
      /^ResourceExhausted: /,
    );
    const third = await client.environments.createEnvironment({ ...sumEnvironment, requestId });
    expect(third.environment?.id).toBe(first.environment?.id);
    expect(await environmentRows('idem-create')).toBe(2);
  });

  it('the same request_id with another request, or a malformed one, is invalid_argument', async () => {
    const client = await tee.clientOf('idem-invalid');
    const requestId = randomUUID();
    await client.environments.createEnvironment({ ...sumEnvironment, requestId });
    expect(
      await failureOf(
        client.environments.createEnvironment({ ...sumEnvironment, requestId, ttlSeconds: 60 }),
      ),
    ).toBe(
      'InvalidArgument: request_id: was used with a different request; send a new request_id for a new request',
    );
    // Maps in another order are the same request.
    const reordered = Object.fromEntries(Object.entries(sumEnvironment.modules).reverse());
    const same = await client.environments.createEnvironment({
      ...sumEnvironment,
      modules: reordered,
      requestId,
    });
    expect(same.environment?.status).toBe(EnvironmentStatus.READY);
    for (const bad of ['has space', 'x'.repeat(129), 'ünïcode', 'a/b']) {
      expect(
        await failureOf(
          client.environments.createEnvironment({ ...sumEnvironment, requestId: bad }),
        ),
      ).toMatch(/^InvalidArgument: request_id: must be 1 to 128 characters/);
    }
    expect(await environmentRows('idem-invalid')).toBe(1);
  });

  it('tenants use the same request_id independently', async () => {
    const requestId = randomUUID();
    const ids = [];
    for (const tenant of ['idem-tenant-a', 'idem-tenant-b']) {
      const client = await tee.clientOf(tenant);
      const { environment } = await client.environments.createEnvironment({
        ...sumEnvironment,
        requestId,
      });
      ids.push(environment?.id);
      expect(await environmentRows(tenant)).toBe(1);
    }
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('Execute and ExecuteStream: a retry returns the same execution, its logs replayed; it ran once', async () => {
    const client = await tee.clientOf('idem-execute');
    const { environment } = await client.environments.createEnvironment({ ...sumEnvironment });
    const environmentId = environment!.id;
    const requestId = randomUUID();
    const request = { environmentId, data: sumData, requestId };
    const { execution: first } = await client.executions.execute(request);
    const { execution: again } = await client.executions.execute(request);
    expect(again).toEqual(first);
    // ExecuteStream shares Execute's key: it replays the execution's logs, then the execution.
    const replayed = await streamed(client.executions.executeStream(request));
    expect(replayed.logs).toEqual(['adding 2 40']);
    expect(replayed.execution).toEqual(first);
    expect(await executionRows(environmentId)).toBe(1);

    const streamRequest = { ...request, requestId: randomUUID() };
    const live = await streamed(client.executions.executeStream(streamRequest));
    const retried = await streamed(client.executions.executeStream(streamRequest));
    expect(retried).toEqual(live);
    expect(live.logs).toEqual(['adding 2 40']);
    expect(await executionRows(environmentId)).toBe(2);

    expect(
      await failureOf(client.executions.execute({ ...request, data: fromJson(ValueSchema, 1) })),
    ).toMatch(/^InvalidArgument: request_id: was used with a different request/);
  });

  it('a retry while the first call runs waits for it and returns its execution', async () => {
    const client = await tee.clientOf('idem-running');
    const { environment } = await client.environments.createEnvironment({
      ...handlerModules(
        "await new Promise((resolve) => setTimeout(resolve, 2_000));\nconsole.log('slept');\nreturn context.executionId;",
      ),
      runtime: Runtime.DENO,
    });
    const request = { environmentId: environment!.id, requestId: randomUUID() };
    const started = Date.now();
    const first = client.executions.execute(request);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Another request under the key is refused at once, while the first still runs.
    expect(
      await failureOf(client.executions.execute({ ...request, data: fromJson(ValueSchema, 1) })),
    ).toMatch(/^InvalidArgument: request_id: /);
    const [unary, stream] = await Promise.all([
      client.executions.execute(request),
      streamed(client.executions.executeStream(request)),
    ]);
    const { execution } = await first;
    expect(Date.now() - started).toBeGreaterThan(2_000);
    expect(unary.execution).toEqual(execution);
    expect(stream).toEqual({ logs: ['slept'], execution });
    expect(execution?.result).toEqual(fromJson(ValueSchema, execution!.id));
    expect(await executionRows(environment!.id)).toBe(1);
  });

  it('DeleteEnvironment: a retry returns the first answer, not not_found', async () => {
    const client = await tee.clientOf('idem-delete');
    const { environment } = await client.environments.createEnvironment({ ...sumEnvironment });
    const request = { id: environment!.id, requestId: randomUUID() };
    const first = await client.environments.deleteEnvironment(request);
    const again = await client.environments.deleteEnvironment(request);
    expect(again).toEqual(first);
    expect(again.environment?.status).toBe(EnvironmentStatus.DELETED);
    // A new request_id is a new deletion: the environment is gone.
    expect(await failureOf(client.environments.deleteEnvironment({ id: environment!.id }))).toMatch(
      /^NotFound: /,
    );
  });

  it('the Python client (standard library only) gets the same environment for a retried request_id', async () => {
    const { key } = await tee.stack.process.infrastructure.apiKeys.create('idem-python', 'a test');
    const { stdout } = await promisify(execFile)('python3', [
      `${pythonClient}retry_create.py`,
      tee.stack.url,
      key,
    ]);
    const printed = JSON.parse(stdout) as Record<string, unknown>;
    expect(printed).toEqual({
      first: printed.first,
      again: printed.first,
      status: 'ENVIRONMENT_STATUS_READY',
      changedBody: expect.stringMatching(
        /^invalid_argument: request_id: was used with a different request/,
      ) as unknown,
      result: { echo: { hello: 'python' } },
    });
    expect(await environmentRows('idem-python')).toBe(1);
  });

  it('the TypeScript client retries unavailable with the same request_id; the work happens once', async () => {
    const { key } = await tee.stack.process.infrastructure.apiKeys.create('idem-client', 'a test');
    // Below the client's retry interceptor: sees every attempt, and loses the first answer.
    const sent: string[] = [];
    let answers = 0;
    const flaky: Interceptor = (next) => async (request) => {
      if (!request.stream) sent.push((request.message as { requestId?: string }).requestId ?? '');
      const response = await next(request);
      if (answers++ === 0) throw new ConnectError('connection lost', Code.Unavailable);
      return response;
    };
    const client = (retry?: false): AssistTeeClient =>
      createAssistTeeClient({
        baseUrl: tee.stack.url,
        apiKey: key,
        interceptors: [flaky],
        retry: retry ?? { initialDelayMs: 10 },
      });

    const { environment } = await client().environments.createEnvironment({ ...sumEnvironment });
    expect(sent).toHaveLength(2);
    expect(sent[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent[1]).toBe(sent[0]);
    expect(await environmentRows('idem-client')).toBe(1);

    sent.length = 0;
    answers = 0;
    const { execution } = await client().executions.execute({
      environmentId: environment!.id,
      data: sumData,
    });
    expect(sent).toHaveLength(2);
    expect(sent[1]).toBe(sent[0]);
    expect(execution?.result).toEqual(fromJson(ValueSchema, { sum: 42 }));
    expect(await executionRows(environment!.id)).toBe(1);

    // Turned off, the first failure is the answer.
    answers = 0;
    expect(
      await failureOf(client(false).environments.getEnvironment({ id: environment!.id })),
    ).toBe('Unavailable: connection lost');
  });
});

// Real processes: the key outlives a restart, and a call cut off by a crash is never run again.
describe('request_id across restarts of the execution service', () => {
  let bed: ProcessTestBed;
  let environments: ServiceProcess;
  let execution: ServiceProcess;
  const startExecution = async () => {
    execution = await bed.start('execution', { TEE_ENVIRONMENTS_URL: environments.url });
  };
  const executions = () => bed.client(execution.url).executions;

  beforeAll(async () => {
    bed = await startProcessTestBed();
    environments = await bed.start('environments');
    await startExecution();
  });
  afterAll(async () => {
    await bed?.tearDown();
  });

  it('a retry after a restart returns the stored execution', async () => {
    const { environment } = await bed
      .client(environments.url)
      .environments.createEnvironment({ ...sumEnvironment });
    const request = { environmentId: environment!.id, data: sumData, requestId: randomUUID() };
    const { execution: first } = await executions().execute(request);
    expect(await stopService(execution)).toBe(0);
    await startExecution();
    const { execution: again } = await executions().execute(request);
    expect(again).toEqual(first);
    const rows = await queryRows(
      bed.databaseUrl,
      'select id from execution.execution where environment_id = $1',
      [environment!.id],
    );
    expect(rows).toEqual([{ id: first!.id }]);
  });

  it('a call cut off by a crash answers aborted to its retry, and never runs twice', async () => {
    const { environment } = await bed.client(environments.url).environments.createEnvironment({
      ...handlerModules('await new Promise((resolve) => setTimeout(resolve, 120_000));'),
      runtime: Runtime.DENO,
    });
    const request = {
      environmentId: environment!.id,
      limits: { timeoutMs: 200_000 },
      requestId: randomUUID(),
    };
    const call = executions()
      .execute(request)
      .catch((error: unknown) => error);
    await waitForRunning(bed.sandbox, { instanceId: bed.instanceId, owner: 'execution' });
    expect(await stopService(execution, 'SIGKILL')).toBe(null);
    expect(await call).toBeInstanceOf(Error);

    await startExecution();
    const retry = createAssistTeeClient({
      baseUrl: execution.url,
      apiKey: bed.apiKey,
      retry: false,
    });
    expect(await failureOf(retry.executions.execute(request))).toBe(
      'Aborted: request_id: the first call with this request_id was interrupted (its service stopped or failed) and its effects are unknown; send a new request_id to run it again',
    );
    const rows = await queryRows<{ status: string }>(
      bed.databaseUrl,
      'select status from execution.execution where environment_id = $1',
      [environment!.id],
    );
    expect(rows).toEqual([{ status: 'SANDBOX_ERROR' }]);
    await bed.client(environments.url).environments.deleteEnvironment({ id: environment!.id });
  });
});
