import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { fromJson, type JsonValue } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it, vi } from 'vitest';
import {
  expectSettled,
  handlerModules,
  queryRows,
  sumExample,
  useTestStack,
} from '../src/index.js';

const BURST = 60;
const MAX_RUNNING = 8;

/** How a call ended (an execution's status, 'ok', or the error code), and how long it took. */
async function timed(call: Promise<unknown>) {
  const started = performance.now();
  try {
    const { execution } = (await call) as { execution?: { status: ExecutionStatus } };
    const ended = execution === undefined ? 'ok' : ExecutionStatus[execution.status];
    return { ended, ms: performance.now() - started };
  } catch (error) {
    const { code, rawMessage } = ConnectError.from(error);
    return { ended: Code[code], message: rawMessage, ms: performance.now() - started };
  }
}

const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))]!;

const polling = { timeout: 30_000, interval: 50 };

// An instance admits only what it is configured for, over all tenants, and refuses the rest at
// once: executions running, setups running, and the memory of its sandboxes (warm ones give
// way to running work).
describe('admission per instance', () => {
  const tee = useTestStack({
    TEE_MAX_RUNNING_EXECUTIONS: String(MAX_RUNNING),
    TEE_MAX_RUNNING_SETUPS: '1',
    TEE_SANDBOX_MEMORY_MB: '1536',
    TEE_DEFAULT_MEMORY_MB: '128',
    TEE_MAX_MEMORY_MB: '1024',
    TEE_POOL_MEMORY_MB: '256',
    TEE_SETUP_MEMORY_MB: '512',
    TEE_SETUP_TMPFS_MB: '64',
  });
  const execute = (environmentId: string, data: JsonValue, memoryMb = 0) =>
    tee.client.executions.execute({
      environmentId,
      data: fromJson(ValueSchema, data),
      limits: { memoryMb },
    });
  const warmContainers = async (environmentId: string) => {
    const { sandbox } = tee.stack.process.infrastructure;
    const { instanceId } = tee.stack.config;
    const containers = await sandbox.listContainers({ instanceId, environmentId, pool: 'warm' });
    return containers.map((container) => container.id);
  };
  const sleeper = async () => {
    const { environment } = await tee.client.environments.createEnvironment({
      ...handlerModules(
        'await new Promise((r) => setTimeout(r, event.data.ms));\nreturn event.data;',
      ),
      runtime: Runtime.DENO,
    });
    return environment!.id;
  };

  it(`answers ${BURST} executions at once: each SUCCEEDED or refused, none failed or hanging`, async () => {
    const environmentId = await sleeper();
    const burstStarted = performance.now();
    const outcomes = await Promise.all(
      Array.from({ length: BURST }, () => timed(execute(environmentId, { ms: 300 }))),
    );
    const wallMs = performance.now() - burstStarted;
    const admitted = outcomes.filter((outcome) => outcome.ended === 'SUCCEEDED');
    const refused = outcomes.filter((outcome) => outcome.ended === 'ResourceExhausted');
    expect(admitted.length + refused.length, JSON.stringify(outcomes)).toBe(BURST);
    expect(admitted.length).toBeGreaterThanOrEqual(MAX_RUNNING);
    expect(refused.length).toBeGreaterThan(0);
    for (const { message } of refused) {
      expect(message).toBe(
        `this instance already has ${MAX_RUNNING} executions running (TEE_MAX_RUNNING_EXECUTIONS); try again when one has finished`,
      );
    }
    // A refusal is immediate; an admitted run is one sandbox start plus 300 ms.
    expect(Math.max(...refused.map((outcome) => outcome.ms))).toBeLessThan(5_000);
    expect(wallMs).toBeLessThan(30_000);
    const ms = (values: { ms: number }[], p: number) =>
      Math.round(
        percentile(
          values.map((outcome) => outcome.ms),
          p,
        ),
      );
    console.log(
      `admission: ${BURST} at once, max ${MAX_RUNNING} running: ${admitted.length} SUCCEEDED ` +
        `(p50 ${ms(admitted, 0.5)} ms, max ${ms(admitted, 1)} ms), ${refused.length} refused ` +
        `(p50 ${ms(refused, 0.5)} ms, max ${ms(refused, 1)} ms), all answered in ${Math.round(wallMs)} ms`,
    );
    // The instance is free again: the next call runs.
    expect((await execute(environmentId, { ms: 0 })).execution!.status).toBe(
      ExecutionStatus.SUCCEEDED,
    );
    await tee.client.environments.deleteEnvironment({ id: environmentId });
  });

  it('refuses a call whose memory does not fit beside the running ones; warm sandboxes give way', async () => {
    const environmentId = await sleeper();
    // 1024 of the 1536 MiB, held for a while.
    const holding = execute(environmentId, { ms: 8_000 }, 1024);
    await vi.waitUntil(async () => {
      const running = await queryRows(
        tee.stack.config.databaseUrl,
        "select id from execution.execution where environment_id = $1 and status = 'RUNNING'",
        [environmentId],
      );
      return running.length === 1;
    }, polling);
    // Its warm sandbox (128 MiB) is ready: 1024 + 128 fit.
    await vi.waitUntil(async () => {
      const { environments } = await tee.operator.admin.pool.getPoolStatus({});
      const pool = environments.find((entry) => entry.environmentId === environmentId);
      return pool?.ready === 1 && pool.starting === 0;
    }, polling);
    const [warm] = await warmContainers(environmentId);
    // 1024 + 768 > 1536: refused at once, naming the setting.
    const refused = await timed(execute(environmentId, { ms: 0 }, 768));
    expect(refused.ended).toBe('ResourceExhausted');
    expect(refused.message).toContain('TEE_SANDBOX_MEMORY_MB');
    expect(refused.message).toContain('limits.memory_mb 768');
    expect(refused.ms).toBeLessThan(2_000);
    // 1024 + 512 fits exactly, once the environment's warm sandbox gives its 128 MiB back.
    const fits = await timed(execute(environmentId, { ms: 0 }, 512));
    expect(fits.ended).toBe('SUCCEEDED');
    expect(await warmContainers(environmentId)).not.toContain(warm);
    expect((await holding).execution!.status).toBe(ExecutionStatus.SUCCEEDED);
    await tee.client.environments.deleteEnvironment({ id: environmentId });
  });

  it('refuses a setup beyond TEE_MAX_RUNNING_SETUPS while another runs', async () => {
    const installing = tee.client.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
      dependencies: { npm: ['is-number@7.0.0'] },
    });
    await vi.waitUntil(async () => {
      const pending = await queryRows(
        tee.stack.config.databaseUrl,
        "select id from environments.environment where status = 'PENDING'",
      );
      return pending.length === 1;
    }, polling);
    const second = await timed(
      tee.client.environments.createEnvironment({ ...sumExample, runtime: Runtime.DENO }),
    );
    expect(second.ended).toBe('ResourceExhausted');
    expect(second.message).toBe(
      'this instance already has 1 setups running (TEE_MAX_RUNNING_SETUPS); try again when one has finished',
    );
    const { environment } = await installing;
    await tee.client.environments.deleteEnvironment({ id: environment!.id });
  });

  it('leaves nothing behind', async () => {
    await expectSettled({
      sandbox: tee.stack.process.infrastructure.sandbox,
      databaseUrl: tee.stack.config.databaseUrl,
      labels: { instanceId: tee.stack.config.instanceId },
    });
  });
});
