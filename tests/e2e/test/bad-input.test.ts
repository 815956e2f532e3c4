import { Code } from '@connectrpc/connect';
import { type CreateEnvironmentRequestSchema, Runtime } from '@assist-tee/client';
import { fromJson, type MessageInitShape } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import {
  queryRows,
  rejection,
  setEnvironmentStatus,
  sumExample,
  useTestStack,
} from '../src/index.js';

type CreateInit = MessageInitShape<typeof CreateEnvironmentRequestSchema>;

describe('bad input is refused with the field named, and nothing is created', () => {
  const tee = useTestStack({
    TEE_MAX_MODULE_BYTES: '4096',
    TEE_MAX_MODULES: '5',
    TEE_MAX_DEPENDENCIES: '3',
    TEE_MAX_EVENT_BYTES: '2048',
  });

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
    [
      'too many modules',
      { ...valid, modules: Object.fromEntries([1, 2, 3, 4, 5, 6].map((n) => [`m${n}.ts`, ''])) },
      'modules: at most 5 modules are allowed, got 6',
    ],
    [
      'a URL as npm specifier',
      { ...valid, dependencies: { npm: ['date-fns@3', 'https://evil.example/x.tgz'] } },
      'dependencies.npm[1]: ',
    ],
    [
      'a plain-http module URL',
      { ...valid, dependencies: { url: ['http://example.com/mod.ts'] } },
      'dependencies.url[0]: "http://example.com/mod.ts" must be an https URL',
    ],
    [
      'a module URL on the metadata address',
      { ...valid, dependencies: { url: ['https://169.254.169.254/latest'] } },
      'dependencies.url[0]: ',
    ],
    [
      'a module URL for Bun',
      { ...valid, runtime: Runtime.BUN, dependencies: { url: ['https://example.com/mod.ts'] } },
      'dependencies.url: RUNTIME_BUN cannot import modules by URL',
    ],
    [
      'more dependencies than the maximum',
      { ...valid, dependencies: { npm: ['a', 'b', 'c'], url: ['https://example.com/d.ts'] } },
      'dependencies: at most 3 dependencies',
    ],
    [
      'a private address in allow_net',
      { ...valid, permissions: { allowNet: ['example.com', '10.0.0.1:5432'] } },
      'permissions.allow_net[1]: "10.0.0.1:5432" is a private address',
    ],
    [
      'a URL in allow_net',
      { ...valid, permissions: { allowNet: ['https://example.com'] } },
      'permissions.allow_net[0]: ',
    ],
    [
      'an IP-literal trick in allow_net',
      { ...valid, permissions: { allowNet: ['2130706433'] } },
      'permissions.allow_net[0]: ',
    ],
    [
      'a TTL above the maximum',
      { ...valid, ttlSeconds: 10_000_000 },
      'ttl_seconds: 10000000 is above the maximum of ',
    ],
    [
      'a bad allow_env name',
      { ...valid, permissions: { allowEnv: ['OK', 'NOT-OK'] } },
      'permissions.allow_env[1]: ',
    ],
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
        () => tee.client.executions.execute({ environmentId, limits: { memoryMb: 1_000_000 } }),
        Code.InvalidArgument,
        'limits.memory_mb: 1000000 is above the maximum of ',
      ],
      [
        () =>
          tee.client.executions.execute({
            environmentId,
            limits: { maxOutputBytes: 1n << 40n },
          }),
        Code.InvalidArgument,
        'limits.max_output_bytes: ',
      ],
      [
        () =>
          tee.client.executions.execute({
            environmentId,
            data: fromJson(ValueSchema, 'x'.repeat(3000)),
          }),
        Code.InvalidArgument,
        'data: the event is ',
      ],
      [
        // A Value without a kind: valid on the wire, not a JSON value.
        () => tee.client.executions.execute({ environmentId, data: {} }),
        Code.InvalidArgument,
        'data: is not a JSON value',
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
    await setEnvironmentStatus(tee.stack.config.databaseUrl, environment!.id, 'FAILED');
    const error = await rejection(
      tee.client.executions.execute({ environmentId: environment!.id }),
    );
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.rawMessage).toContain('FAILED');
    await setEnvironmentStatus(tee.stack.config.databaseUrl, environment!.id, 'READY');
    await tee.client.environments.deleteEnvironment({ id: environment!.id });
  });
});
