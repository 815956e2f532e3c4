import {
  createAssistTeeClient,
  EnvironmentStatus,
  ExecutionStatus,
  Runtime,
} from '@assist-tee/client';
import { fromJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestStack, sumExample, type TestStack } from '../src/index.js';

// Every protocol is served on the one port: gRPC (h2c), gRPC-Web and Connect (binary and JSON).
describe.each([
  { protocol: 'grpc', useJson: false },
  { protocol: 'grpc-web', useJson: false },
  { protocol: 'connect', useJson: false },
  { protocol: 'connect', useJson: true },
] as const)('the typed client over $protocol (json: $useJson)', ({ protocol, useJson }) => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('sets up, executes, streams, lists and deletes', async () => {
    const client = createAssistTeeClient({
      baseUrl: stack.url,
      protocol,
      useJson,
      apiKey: stack.apiKey,
    });
    const { environment } = await client.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
      labels: { team: 'agents' },
    });
    expect(environment?.status).toBe(EnvironmentStatus.READY);
    expect(environment?.labels).toEqual({ team: 'agents' });
    const environmentId = environment!.id;

    const { execution } = await client.executions.execute({
      environmentId,
      data: fromJson(ValueSchema, { a: 2, b: 3 }),
    });
    expect(execution?.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(execution?.result?.kind).toEqual({
      case: 'structValue',
      value: expect.objectContaining({
        fields: { sum: expect.objectContaining({ kind: { case: 'numberValue', value: 5 } }) },
      }),
    });

    const streamed = [];
    for await (const message of client.executions.executeStream({
      environmentId,
      data: fromJson(ValueSchema, { a: 1, b: 1 }),
    })) {
      streamed.push(message.event);
    }
    expect(streamed.map((event) => event.case)).toEqual(['log', 'execution']);
    expect(streamed[0]?.case === 'log' && streamed[0].value.message).toBe('adding 1 1');
    const last = streamed[1];
    expect(last?.case === 'execution' && last.value.status).toBe(ExecutionStatus.SUCCEEDED);

    const { executions } = await client.executions.listExecutions({ environmentId });
    expect(executions).toHaveLength(2);
    const { environment: got } = await client.environments.getEnvironment({ id: environmentId });
    expect(got?.id).toBe(environmentId);
    const operator = createAssistTeeClient({
      baseUrl: stack.url,
      protocol,
      useJson,
      apiKey: stack.config.auth.serviceKey,
    });
    const status = await operator.admin.reaper.getStatus({});
    expect(status.instanceId).toBe(stack.config.instanceId);

    const { environment: deleted } = await client.environments.deleteEnvironment({
      id: environmentId,
    });
    expect(deleted?.status).toBe(EnvironmentStatus.DELETED);
  });
});
