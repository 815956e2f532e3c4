import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { collectEvents } from '@assist-tee/testing';
import { fromJson, type JsonValue } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it, vi } from 'vitest';
import {
  expectSettled,
  handlerModules,
  queryRows,
  setEnvironmentStatus,
  sumExample,
  useTestStack,
} from '../src/index.js';

const codeOf = (call: Promise<unknown>) =>
  call.then(
    () => 'ok',
    (error: unknown) => Code[ConnectError.from(error).code],
  );

const polling = { timeout: 30_000, interval: 50 };

// Where an execution's own path meets another actor: another tenant, the stuck-execution sweep.
describe('execution races', () => {
  // The stuck-execution sweep looks every 200 ms instead of every 30 s.
  const tee = useTestStack({ TEE_STUCK_SWEEP_MS: '200' });
  const setStatus = (id: string, status: string) =>
    setEnvironmentStatus(tee.stack.config.databaseUrl, id, status);

  it('another tenant’s environment that is not READY does not exist for a tenant either', async () => {
    const owner = await tee.clientOf('owner');
    const other = await tee.clientOf('other');
    const { environment } = await owner.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
    });
    const id = environment!.id;
    await setStatus(id, 'FAILED');
    expect(await codeOf(owner.executions.execute({ environmentId: id }))).toBe(
      'FailedPrecondition',
    );
    expect(await codeOf(other.executions.execute({ environmentId: id }))).toBe('NotFound');
    await setStatus(id, 'READY');
    await owner.environments.deleteEnvironment({ id });
  });

  it('an execution the stuck-execution sweep finished keeps that outcome, published and counted once', async () => {
    const { nats } = tee.stack.config;
    const events = await collectEvents(nats.servers, nats.subjectPrefix);
    try {
      const { environment } = await tee.client.environments.createEnvironment({
        ...handlerModules('await new Promise((r) => setTimeout(r, event.data.ms));\nreturn 1;'),
        runtime: Runtime.DENO,
      });
      const environmentId = environment!.id;
      const execute = (data: JsonValue) =>
        tee.client.executions.execute({ environmentId, data: fromJson(ValueSchema, data) });
      const running = execute({ ms: 5_000 });
      const executionId = await vi.waitUntil(async () => {
        const [row] = await queryRows<{ id: string }>(
          tee.stack.config.databaseUrl,
          "select id from execution.execution where environment_id = $1 and status = 'RUNNING'",
          [environmentId],
        );
        return row?.id;
      }, polling);
      // As if its service had been lost long ago: the sweep finishes it and removes its
      // sandbox, while the execution itself is still waiting for the outcome.
      await queryRows(
        tee.stack.config.databaseUrl,
        "update execution.execution set created_at = created_at - interval '1 hour' where id = $1",
        [executionId],
      );
      const { execution } = await running;
      expect(execution!.id).toBe(executionId);
      expect(execution!.status).toBe(ExecutionStatus.SANDBOX_ERROR);
      expect(execution!.error?.name).toBe('SandboxLost');
      const [stored] = await queryRows<{ status: string }>(
        tee.stack.config.databaseUrl,
        'select status from execution.execution where id = $1',
        [executionId],
      );
      expect(stored!.status).toBe('SANDBOX_ERROR');

      // Events are published in the order they were written: once the next execution's
      // execution.finished is in, a second one of the first would be too.
      const { execution: next } = await execute({ ms: 0 });
      const finishedOf = (id: string) =>
        events.events.filter(
          (event) =>
            event.type === 'execution.finished' &&
            (event.message as { execution?: { id: string } }).execution?.id === id,
        );
      await events.waitFor(() => finishedOf(next!.id).length > 0);
      expect(finishedOf(executionId)).toHaveLength(1);
      const counted = await vi.waitUntil(async () => {
        const { environment: seen } = await tee.client.environments.getEnvironment({
          id: environmentId,
        });
        return seen!.executionCount >= 2n && seen!.executionCount;
      }, polling);
      expect(counted).toBe(2n);
      await tee.client.environments.deleteEnvironment({ id: environmentId });
    } finally {
      await events.stop();
    }
  });

  it('leaves nothing behind', async () => {
    await expectSettled({
      sandbox: tee.stack.process.infrastructure.sandbox,
      databaseUrl: tee.stack.config.databaseUrl,
      labels: { instanceId: tee.stack.config.instanceId },
    });
  });
});
