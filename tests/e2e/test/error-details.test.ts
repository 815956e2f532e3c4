import {
  BadRequestSchema,
  createAssistTeeClient,
  DeletionReason,
  ErrorInfoSchema,
  ExecutionStatus,
  RetryInfoSchema,
  Runtime,
} from '@assist-tee/client';
import { type DescMessage, fromBinary, fromJson, type MessageShape } from '@bufbuild/protobuf';
import { base64Decode } from '@bufbuild/protobuf/wire';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { describe, expect, it, vi } from 'vitest';
import {
  expectSettled,
  handlerModules,
  queryRows,
  setEnvironmentStatus,
  rejection,
  sumExample,
  useTestStack,
} from '../src/index.js';

/** A Connect error body as a client without generated code reads it. */
interface ConnectErrorBody {
  code: string;
  message: string;
  details?: { type: string; value: string; debug?: unknown }[];
}

/** What findDetails does, by hand: the details of one type, decoded from their base64 bytes. */
function jsonDetails<Desc extends DescMessage>(
  body: ConnectErrorBody,
  desc: Desc,
): MessageShape<Desc>[] {
  return (body.details ?? [])
    .filter((detail) => detail.type === desc.typeName)
    .map((detail) => fromBinary(desc, base64Decode(detail.value)));
}

const DOMAIN = 'assist-tee.dev';
const polling = { timeout: 30_000, interval: 50 };

// Every refusal carries what a client acts on as google.rpc details beside the message, on
// both wires: gRPC (grpc-status-details-bin, read by the typed client) and Connect JSON
// (details[] with type and base64 value, read here with plain fetch).
describe('errors carry google.rpc details over gRPC and Connect JSON', () => {
  const tee = useTestStack({
    TEE_QUOTA_ENVIRONMENTS: '1',
    TEE_QUOTA_CONCURRENT_EXECUTIONS: '1',
    TEE_MAX_RUNNING_EXECUTIONS: '2',
  });

  /** A new tenant's key, a gRPC client with it, and Connect JSON calls (`package.Service/Method`). */
  const tenant = async (tenantId: string) => {
    const { apiKeys } = tee.stack.process.infrastructure;
    const { key } = await apiKeys.create(tenantId, 'error details test');
    const grpc = createAssistTeeClient({ baseUrl: tee.stack.url, apiKey: key, protocol: 'grpc' });
    const json = async (method: string, body: unknown) => {
      const response = await fetch(`${tee.stack.url}/${method}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as ConnectErrorBody };
    };
    return { grpc, json };
  };

  const sleeper = async (client: Awaited<ReturnType<typeof tenant>>['grpc']) => {
    const { environment } = await client.environments.createEnvironment({
      ...handlerModules(
        'await new Promise((r) => setTimeout(r, event.data.ms));\nreturn event.data;',
      ),
      runtime: Runtime.DENO,
    });
    return environment!.id;
  };

  it('names the field of a validation error in a google.rpc.BadRequest', async () => {
    const { grpc, json } = await tenant('validation');
    const error = await rejection(
      grpc.environments.createEnvironment({
        ...sumExample,
        runtime: Runtime.DENO,
        modules: { ...sumExample.modules, '../etc/passwd': 'x' },
      }),
    );
    expect(error.code).toBe(Code.InvalidArgument);
    const [badRequest] = error.findDetails(BadRequestSchema);
    expect(badRequest?.fieldViolations.map(({ field }) => field)).toEqual([
      'modules["../etc/passwd"]',
    ]);
    // The message is the field, then the description.
    expect(error.rawMessage).toBe(
      `modules["../etc/passwd"]: ${badRequest!.fieldViolations[0]!.description}`,
    );

    const refused = await json('assist_tee.v1.ExecutionService/Execute', {
      environmentId: '00000000-0000-4000-8000-000000000000',
      limits: { timeoutMs: 10_000_000 },
    });
    expect(refused.status).toBe(400);
    expect(refused.body.code).toBe('invalid_argument');
    expect(refused.body.details?.map((detail) => detail.type)).toEqual(['google.rpc.BadRequest']);
    const [viaJson] = jsonDetails(refused.body, BadRequestSchema);
    expect(viaJson?.fieldViolations).toEqual([
      expect.objectContaining({
        field: 'limits.timeout_ms',
        description: expect.stringMatching(/^10000000 is above the maximum of \d+$/),
      }),
    ]);
  });

  it('gives an exceeded quota an ErrorInfo with its reason and numbers, and no retry hint', async () => {
    const { grpc, json } = await tenant('quota');
    const { environment } = await grpc.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
    });
    const expected = {
      reason: 'TENANT_QUOTA_ENVIRONMENTS',
      domain: DOMAIN,
      metadata: { tenant: 'quota', limit: '1', current: '1', setting: 'TEE_QUOTA_ENVIRONMENTS' },
    };
    const error = await rejection(
      grpc.environments.createEnvironment({ ...sumExample, runtime: Runtime.DENO }),
    );
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.findDetails(ErrorInfoSchema)).toEqual([expect.objectContaining(expected)]);
    // Deleting one is what helps, not waiting.
    expect(error.findDetails(RetryInfoSchema)).toEqual([]);

    const refused = await json('assist_tee.v1.EnvironmentService/CreateEnvironment', {
      ...sumExample,
      runtime: 'RUNTIME_DENO',
    });
    expect(refused.status).toBe(429);
    expect(refused.body.code).toBe('resource_exhausted');
    expect(jsonDetails(refused.body, ErrorInfoSchema)).toEqual([expect.objectContaining(expected)]);
    await grpc.environments.deleteEnvironment({ id: environment!.id });
  });

  it('tells a caller refused admission which limit, and when to retry', async () => {
    const [a, b, c] = await Promise.all(['busy-a', 'busy-b', 'busy-c'].map(tenant));
    const [envA, envB, envC] = await Promise.all([a!, b!, c!].map(({ grpc }) => sleeper(grpc)));
    const hold = (caller: typeof a, environmentId: string | undefined) =>
      caller!.grpc.executions.execute({
        environmentId,
        data: fromJson(ValueSchema, { ms: 6_000 }),
      });
    const running = async (count: number) => {
      const rows = await queryRows(
        tee.stack.config.databaseUrl,
        "select id from execution.execution where status = 'RUNNING'",
      );
      return rows.length === count;
    };
    const holdingA = hold(a, envA);
    await vi.waitUntil(() => running(1), polling);
    // busy-a runs as many as its quota allows.
    const quota = await rejection(hold(a, envA));
    expect(quota.code).toBe(Code.ResourceExhausted);
    expect(quota.findDetails(ErrorInfoSchema)).toEqual([
      expect.objectContaining({
        reason: 'TENANT_QUOTA_CONCURRENT_EXECUTIONS',
        domain: DOMAIN,
        metadata: {
          tenant: 'busy-a',
          limit: '1',
          current: '1',
          setting: 'TEE_QUOTA_CONCURRENT_EXECUTIONS',
        },
      }),
    ]);
    expect(quota.findDetails(RetryInfoSchema).map(({ retryDelay }) => retryDelay)).toEqual([
      expect.objectContaining({ seconds: 1n, nanos: 0 }),
    ]);

    // With busy-b's run the instance runs its 2: busy-c, within its own quota, is refused by
    // the instance.
    const holdingB = hold(b, envB);
    await vi.waitUntil(() => running(2), polling);
    const busy = await c!.json('assist_tee.v1.ExecutionService/Execute', {
      environmentId: envC,
      data: {},
    });
    expect(busy.status).toBe(429);
    expect(jsonDetails(busy.body, ErrorInfoSchema)).toEqual([
      expect.objectContaining({
        reason: 'INSTANCE_BUSY',
        domain: DOMAIN,
        metadata: {
          resource: 'running_executions',
          limit: '2',
          current: '2',
          setting: 'TEE_MAX_RUNNING_EXECUTIONS',
        },
      }),
    ]);
    expect(jsonDetails(busy.body, RetryInfoSchema).map(({ retryDelay }) => retryDelay)).toEqual([
      expect.objectContaining({ seconds: 1n, nanos: 0 }),
    ]);

    const finished = await Promise.all([holdingA, holdingB]);
    expect(finished.map(({ execution }) => execution!.status)).toEqual([
      ExecutionStatus.SUCCEEDED,
      ExecutionStatus.SUCCEEDED,
    ]);
    // The hint holds: the instance admits busy-c now.
    const admitted = await c!.json('assist_tee.v1.ExecutionService/Execute', {
      environmentId: envC,
      data: { ms: 0 },
    });
    expect(admitted.status).toBe(200);
    await Promise.all(
      [a, b, c].map((caller, i) =>
        caller!.grpc.environments.deleteEnvironment({ id: [envA, envB, envC][i] }),
      ),
    );
  });

  it('gives a failed precondition an ErrorInfo: executing an environment that is not READY', async () => {
    const { grpc, json } = await tenant('precondition');
    const { environment } = await grpc.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
    });
    const id = environment!.id;
    const setStatus = (status: string) =>
      setEnvironmentStatus(tee.stack.config.databaseUrl, id, status);
    await setStatus('FAILED');
    const expected = {
      reason: 'ENVIRONMENT_NOT_READY',
      domain: DOMAIN,
      metadata: { environmentId: id, status: 'ENVIRONMENT_STATUS_FAILED' },
    };
    const error = await rejection(grpc.executions.execute({ environmentId: id }));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.findDetails(ErrorInfoSchema)).toEqual([expect.objectContaining(expected)]);

    const refused = await json('assist_tee.v1.ExecutionService/Execute', { environmentId: id });
    expect(refused.status).toBe(400);
    expect(refused.body.code).toBe('failed_precondition');
    expect(jsonDetails(refused.body, ErrorInfoSchema)).toEqual([expect.objectContaining(expected)]);
    await setStatus('READY');
    await grpc.environments.deleteEnvironment({ id });
  });

  it("gives a refused request an ErrorInfo: the reaper's deletion reason, the operator API", async () => {
    const { grpc, json } = await tenant('permission');
    const error = await rejection(
      grpc.environments.deleteEnvironment({
        id: '00000000-0000-4000-8000-000000000000',
        reason: DeletionReason.EXPIRED,
      }),
    );
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.findDetails(ErrorInfoSchema)).toEqual([
      expect.objectContaining({
        reason: 'REAPER_ONLY_REASON',
        domain: DOMAIN,
        metadata: { field: 'reason' },
      }),
    ]);

    // Refused from the headers, before the body is read: the details come along all the same.
    const expected = {
      reason: 'OPERATOR_ONLY',
      domain: DOMAIN,
      metadata: { service: 'assist_tee.admin.v1.WarmPoolService' },
    };
    const operatorOnly = await rejection(grpc.admin.pool.getPoolStatus({}));
    expect(operatorOnly.code).toBe(Code.PermissionDenied);
    expect(operatorOnly.findDetails(ErrorInfoSchema)).toEqual([expect.objectContaining(expected)]);
    const refused = await json('assist_tee.admin.v1.WarmPoolService/GetPoolStatus', {});
    expect(refused.status).toBe(403);
    expect(jsonDetails(refused.body, ErrorInfoSchema)).toEqual([expect.objectContaining(expected)]);
  });

  it('leaves nothing behind', async () => {
    await expectSettled({
      sandbox: tee.stack.process.infrastructure.sandbox,
      databaseUrl: tee.stack.config.databaseUrl,
      labels: { instanceId: tee.stack.config.instanceId },
    });
  });
});
