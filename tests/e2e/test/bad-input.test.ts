import { Code, ConnectError } from '@connectrpc/connect';
import { type CreateEnvironmentRequestSchema, Runtime } from '@assist-tee/client';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { queryRows, sumExample, useTestStack } from '../src/index.js';

type CreateInit = MessageInitShape<typeof CreateEnvironmentRequestSchema>;

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error('expected the call to fail');
}

describe('bad input is refused with the field named, and nothing is created', () => {
  const tee = useTestStack({ TEE_MAX_MODULE_BYTES: '4096' });

  const valid: CreateInit = { ...sumExample, runtime: Runtime.DENO };
  it.each<[string, CreateInit, string]>([
    [
      'a parent path',
      { ...valid, modules: { ...valid.modules, '../etc/passwd': 'x' } },
      'modules["../etc/passwd"]: ',
    ],
    [
      'an absolute path',
      { ...valid, modules: { ...valid.modules, '/etc/passwd': 'x' } },
      'modules["/etc/passwd"]: ',
    ],
    ['a missing main module', { ...valid, mainModule: 'nope.ts' }, 'main_module: '],
    ['an unknown runtime', { ...valid, runtime: 7 as Runtime }, 'runtime: '],
    ['no runtime', { ...valid, runtime: Runtime.UNSPECIFIED }, 'runtime: '],
    ['empty modules', { ...valid, modules: {} }, 'modules: '],
    [
      'an oversized module',
      { ...valid, modules: { ...valid.modules, 'big.ts': 'x'.repeat(4097) } },
      'modules["big.ts"]: ',
    ],
    ['dependencies', { ...valid, dependencies: { npm: ['date-fns@3'] } }, 'dependencies.npm: '],
  ])('refuses %s', async (_, request, field) => {
    const error = await rejection(tee.client.environments.createEnvironment(request));
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage.startsWith(field)).toBe(true);
  });

  it('refuses bad execute requests', async () => {
    const { environment } = await tee.client.environments.createEnvironment(valid);
    const environmentId = environment!.id;
    // Thunks: each call starts only when its turn comes, so no rejection waits unobserved.
    const cases: [() => Promise<unknown>, Code, string][] = [
      [
        () => tee.client.executions.execute({ environmentId: '' }),
        Code.InvalidArgument,
        'environment_id: ',
      ],
      [
        () => tee.client.executions.execute({ environmentId, limits: { timeoutMs: 10_000_000 } }),
        Code.InvalidArgument,
        'limits.timeout_ms: ',
      ],
      [
        () => tee.client.executions.execute({ environmentId, env: { SECRET: 'x' } }),
        Code.InvalidArgument,
        'env["SECRET"]: ',
      ],
      [
        () =>
          tee.client.executions.execute({ environmentId: '00000000-0000-4000-8000-000000000000' }),
        Code.NotFound,
        'environment ',
      ],
      [
        () => tee.client.executions.listExecutions({ environmentId: '' }),
        Code.InvalidArgument,
        'environment_id: ',
      ],
      [() => tee.client.executions.getExecution({ id: 'nope' }), Code.NotFound, 'execution '],
      [
        () => tee.client.environments.listEnvironments({ pageToken: 'garbage' }),
        Code.InvalidArgument,
        'page_token: ',
      ],
    ];
    for (const [call, code, prefix] of cases) {
      const error = await rejection(call());
      expect({ code: error.code, message: error.rawMessage }).toMatchObject({ code });
      expect(error.rawMessage.slice(0, prefix.length)).toBe(prefix);
    }
    await tee.client.environments.deleteEnvironment({ id: environmentId });
  });

  it('leaves no rows, volumes or containers behind for refused requests', async () => {
    const rows = await queryRows<{ status: string }>(
      tee.stack.config.databaseUrl,
      'select status from environments.environment',
    );
    // Only the environment the execute test created (and deleted) exists.
    expect(rows.map((row) => row.status)).toEqual(['DELETED']);
    const { sandbox } = tee.stack.process.infrastructure;
    expect(await sandbox.listVolumes({ instanceId: tee.stack.config.instanceId })).toEqual([]);
    expect(await sandbox.listContainers({ instanceId: tee.stack.config.instanceId })).toEqual([]);
    const executions = await queryRows(
      tee.stack.config.databaseUrl,
      'select id from execution.execution',
    );
    expect(executions).toEqual([]);
  });

  it('refuses work on an environment that is not READY', async () => {
    const { environment } = await tee.client.environments.createEnvironment(valid);
    await queryRows(
      tee.stack.config.databaseUrl,
      "update environments.environment set status = 'FAILED' where id = $1",
      [environment!.id],
    );
    const error = await rejection(
      tee.client.executions.execute({ environmentId: environment!.id }),
    );
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.rawMessage).toContain('FAILED');
    await queryRows(
      tee.stack.config.databaseUrl,
      "update environments.environment set status = 'READY' where id = $1",
      [environment!.id],
    );
    await tee.client.environments.deleteEnvironment({ id: environment!.id });
  });
});
