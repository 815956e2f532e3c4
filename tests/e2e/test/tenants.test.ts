import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  type AssistTeeClient,
  createAssistTeeClient,
  DeletionReason,
  EnvironmentStatus,
  ExecutionStatus,
  Runtime,
} from '@assist-tee/client';
import { collectEvents } from '@assist-tee/testing';
import { fromJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it, vi } from 'vitest';
import { handlerModules, sumExample, useTestStack } from '../src/index.js';

const root = new URL('../../..', import.meta.url).pathname;
const codeOf = (call: Promise<unknown>) =>
  call.then(
    () => 'ok',
    (error: unknown) => Code[ConnectError.from(error).code],
  );

describe('API keys, tenants and quotas', () => {
  const tee = useTestStack({
    TEE_QUOTA_ENVIRONMENTS: '3',
    TEE_QUOTA_CONCURRENT_EXECUTIONS: '2',
    TEE_QUOTA_CONCURRENT_SETUPS: '1',
  });
  const keyless = () => createAssistTeeClient({ baseUrl: tee.stack.url });
  const withKey = (apiKey: string) => createAssistTeeClient({ baseUrl: tee.stack.url, apiKey });

  it('every call needs a valid key; /healthz does not', async () => {
    for (const client of [keyless(), withKey('tee_not-a-real-key')]) {
      expect(await codeOf(client.environments.createEnvironment({ ...sumExample }))).toBe(
        'Unauthenticated',
      );
      expect(await codeOf(client.environments.listEnvironments({}))).toBe('Unauthenticated');
      expect(await codeOf(client.executions.execute({ environmentId: 'x' }))).toBe(
        'Unauthenticated',
      );
      expect(await codeOf(client.admin.pool.getPoolStatus({}))).toBe('Unauthenticated');
      expect(await codeOf(client.admin.reaper.getStatus({}))).toBe('Unauthenticated');
    }
    expect((await fetch(`${tee.stack.url}/healthz`)).status).toBe(200);
  });

  it('keys are made, listed and revoked with npm run keys, without a restart', async () => {
    const keys = (...args: string[]) =>
      promisify(execFile)('npm', ['run', '--silent', 'keys', '--', ...args], {
        cwd: root,
        env: { ...process.env, TEE_DATABASE_URL: tee.stack.config.databaseUrl },
      });
    const { stdout: key } = await keys('create', 'cli-tenant', 'made by the test');
    const client = withKey(key.trim());
    expect((await client.environments.listEnvironments({})).environments).toEqual([]);
    const { stdout: listed } = await keys('list', 'cli-tenant');
    const [id, tenant, , state, name] = listed.trim().split('\t');
    expect([tenant, state, name]).toEqual(['cli-tenant', 'live', 'made by the test']);
    expect(listed).not.toContain(key.trim());
    await keys('revoke', id!);
    // Keys are remembered for 5 s: the revocation holds within that, with the service running.
    await vi.waitFor(
      async () =>
        expect(await codeOf(client.environments.listEnvironments({}))).toBe('Unauthenticated'),
      { timeout: 10_000, interval: 250 },
    );
    expect((await keys('list', 'cli-tenant')).stdout).toContain('\trevoked ');
  });

  it('another tenant’s environments and executions do not exist for a tenant', async () => {
    const events = await collectEvents(
      tee.stack.config.nats.servers,
      tee.stack.config.nats.subjectPrefix,
    );
    try {
      const owner = await tee.clientOf('owner');
      const other = await tee.clientOf('other');
      const { environment } = await owner.environments.createEnvironment({
        ...sumExample,
        runtime: Runtime.DENO,
      });
      const id = environment!.id;
      expect(environment!.tenantId).toBe('owner');
      const { execution } = await owner.executions.execute({
        environmentId: id,
        data: fromJson(ValueSchema, { a: 1, b: 2 }),
      });
      expect(execution!.tenantId).toBe('owner');

      expect(await codeOf(other.environments.getEnvironment({ id }))).toBe('NotFound');
      expect(await codeOf(other.executions.execute({ environmentId: id }))).toBe('NotFound');
      expect(await codeOf(other.executions.getExecution({ id: execution!.id }))).toBe('NotFound');
      expect((await other.executions.listExecutions({ environmentId: id })).executions).toEqual([]);
      expect((await other.environments.listEnvironments({})).environments).toEqual([]);
      expect(await codeOf(other.environments.deleteEnvironment({ id }))).toBe('NotFound');
      // The owner still has it all.
      expect((await owner.environments.listEnvironments({})).environments.map((e) => e.id)).toEqual(
        [id],
      );
      expect(
        (await owner.executions.listExecutions({ environmentId: id })).executions,
      ).toHaveLength(1);
      await owner.environments.deleteEnvironment({ id });

      // Every event says whose it is.
      const seen = await events.waitFor((all) => all.some((e) => e.type === 'environment.deleted'));
      const tenants = Object.fromEntries(
        seen.map((event) => {
          const message = event.message as Record<string, unknown> & {
            environment?: { tenantId: string };
            execution?: { tenantId: string };
            tenantId?: string;
          };
          return [
            event.type,
            message.environment?.tenantId ?? message.execution?.tenantId ?? message.tenantId,
          ];
        }),
      );
      expect(tenants).toEqual({
        'environment.created': 'owner',
        'execution.started': 'owner',
        'execution.finished': 'owner',
        'environment.deleted': 'owner',
      });
    } finally {
      await events.stop();
    }
  });

  it.each(['connect', 'grpc'] as const)(
    'the operator API (assist_tee.admin.v1) takes the services’ key only, over %s',
    async (protocol) => {
      const [tenant, operator] = [tee.stack.apiKey, tee.stack.config.auth.serviceKey].map(
        (apiKey) => createAssistTeeClient({ baseUrl: tee.stack.url, protocol, apiKey }).admin,
      );
      const calls = (client: AssistTeeClient['admin']) => [
        client.pool.getPoolStatus({}),
        client.reaper.getStatus({}),
        client.reaper.sweep({}),
      ];
      expect(await Promise.all(calls(tenant!).map(codeOf))).toEqual(
        Array(3).fill('PermissionDenied'),
      );
      const [pool, status, sweep] = await Promise.all(calls(operator!));
      expect(pool).toMatchObject({ memoryBudgetMb: tee.stack.config.pool.memoryBudgetMb });
      expect(status).toMatchObject({ instanceId: tee.stack.config.instanceId });
      expect(sweep).toMatchObject({ report: { finishTime: expect.anything() } });
    },
  );

  it('the services’ key owns no environments', async () => {
    expect(
      await codeOf(
        tee.operator.environments.createEnvironment({ ...sumExample, runtime: Runtime.BUN }),
      ),
    ).toBe('PermissionDenied');
  });

  it('only the services’ key (the reaper) may delete an environment as EXPIRED', async () => {
    const { environment } = await tee.client.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.BUN,
    });
    const id = environment!.id;
    const refused = await tee.client.environments
      .deleteEnvironment({ id, reason: DeletionReason.EXPIRED })
      .catch((error: unknown) => ConnectError.from(error));
    expect(refused).toBeInstanceOf(ConnectError);
    expect([Code[(refused as ConnectError).code], (refused as ConnectError).rawMessage]).toEqual([
      'PermissionDenied',
      expect.stringMatching(/^reason: /),
    ]);
    const kept = await tee.client.environments.getEnvironment({ id });
    expect(kept.environment!.status).toBe(EnvironmentStatus.READY);

    const deleted = await tee.operator.environments.deleteEnvironment({
      id,
      reason: DeletionReason.EXPIRED,
    });
    expect(deleted.environment!.status).toBe(EnvironmentStatus.DELETED);
  });

  it('live environments per tenant: ResourceExhausted naming the quota', async () => {
    const tenant = await tee.clientOf('quota-environments');
    const create = () =>
      tenant.environments.createEnvironment({ ...sumExample, runtime: Runtime.BUN });
    const made = [];
    for (let i = 0; i < 3; i++) made.push((await create()).environment!.id);
    const refused = await create().catch((error: unknown) => ConnectError.from(error));
    expect(refused).toMatchObject({ code: Code.ResourceExhausted });
    expect((refused as ConnectError).rawMessage).toContain('TEE_QUOTA_ENVIRONMENTS');
    // Another tenant is not held back, and a deletion makes room.
    const other = await tee.clientOf('quota-other');
    const { environment } = await other.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.BUN,
    });
    await tenant.environments.deleteEnvironment({ id: made.pop()! });
    made.push((await create()).environment!.id);
    for (const id of [...made, environment!.id]) {
      await (id === environment!.id ? other : tenant).environments.deleteEnvironment({ id });
    }
  });

  it('executions and setups at once per tenant: ResourceExhausted naming the quota', async () => {
    const tenant = await tee.clientOf('quota-running');
    const { environment } = await tenant.environments.createEnvironment({
      ...handlerModules('await new Promise((resolve) => setTimeout(resolve, 3000)); return 1;'),
      runtime: Runtime.BUN,
    });
    const environmentId = environment!.id;
    const running = [1, 2].map(() => tenant.executions.execute({ environmentId }));
    // A run is recorded RUNNING once it has lasted 100 ms: both hold the quota by then.
    await vi.waitFor(
      async () => {
        const { executions } = await tenant.executions.listExecutions({ environmentId });
        expect(executions.map((execution) => execution.status)).toEqual([
          ExecutionStatus.RUNNING,
          ExecutionStatus.RUNNING,
        ]);
      },
      { timeout: 10_000, interval: 50 },
    );
    const third = await tenant.executions
      .execute({ environmentId })
      .catch((e: unknown) => ConnectError.from(e));
    expect(third).toMatchObject({ code: Code.ResourceExhausted });
    expect((third as ConnectError).rawMessage).toContain('TEE_QUOTA_CONCURRENT_EXECUTIONS');
    for (const { execution } of await Promise.all(running)) {
      expect(execution!.status).toBe(ExecutionStatus.SUCCEEDED);
    }

    // A setup with a dependency install takes a while: a second one meanwhile is refused.
    const installing = tenant.environments.createEnvironment({
      runtime: Runtime.BUN,
      mainModule: 'main.ts',
      modules: { 'main.ts': 'export const handler = () => 1;' },
      dependencies: { npm: ['is-number@7.0.0'] },
    });
    // Its row is PENDING from the start of the setup to its end: the quota is held meanwhile.
    await vi.waitFor(
      async () => {
        const pending = await tenant.environments.listEnvironments({
          status: EnvironmentStatus.PENDING,
        });
        expect(pending.environments).toHaveLength(1);
      },
      { timeout: 10_000, interval: 50 },
    );
    const second = await tenant.environments
      .createEnvironment({ ...sumExample, runtime: Runtime.BUN })
      .catch((e: unknown) => ConnectError.from(e));
    expect(second).toMatchObject({ code: Code.ResourceExhausted });
    expect((second as ConnectError).rawMessage).toContain('TEE_QUOTA_CONCURRENT_SETUPS');
    const installed = (await installing).environment!;
    for (const id of [environmentId, installed.id]) {
      await tenant.environments.deleteEnvironment({ id });
    }
  });
});

describe('without keys (TEE_ALLOW_NO_AUTH=1, development only)', () => {
  const tee = useTestStack({ TEE_ALLOW_NO_AUTH: '1' });

  it('a call without a key acts as the tenant "dev", and /healthz says so', async () => {
    const client = createAssistTeeClient({ baseUrl: tee.stack.url });
    const { environment } = await client.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.BUN,
    });
    expect(environment!.tenantId).toBe('dev');
    // A key still counts: the tenant "test" does not see "dev"'s environment.
    expect((await tee.client.environments.listEnvironments({})).environments).toEqual([]);
    await client.environments.deleteEnvironment({ id: environment!.id });
    const health = (await (await fetch(`${tee.stack.url}/healthz`)).json()) as {
      warnings?: string[];
    };
    expect(health.warnings).toEqual([expect.stringMatching(/^INSECURE: calls without an API key/)]);
  });
});
