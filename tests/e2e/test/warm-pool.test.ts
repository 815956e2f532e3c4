import { admin, ColdStartReason, ExecutionStatus, Runtime } from '@assist-tee/client';
import { fromJson, type JsonValue, toJson, toJsonString } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { expectNothingLabelled } from '@assist-tee/testing';
import { Code } from '@connectrpc/connect';
import { describe, expect, it, vi } from 'vitest';
import {
  handlerModules,
  NAMED_RUNTIMES,
  type StackWithClient,
  useTestStack,
} from '../src/index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls the pool until `done` holds for the environment's entry (undefined when it has none). */
async function poolUntil(
  tee: StackWithClient,
  environmentId: string,
  done: (entry: { ready: number; starting: number } | undefined) => boolean,
  timeoutMs = 30_000,
) {
  return vi.waitFor(
    async () => {
      const status = await tee.operator.admin.pool.getPoolStatus({});
      const entry = status.environments.find((pool) => pool.environmentId === environmentId);
      expect(
        done(entry),
        `pool of ${environmentId}: ${entry && toJsonString(admin.EnvironmentPoolSchema, entry)}`,
      ).toBe(true);
      return entry;
    },
    { timeout: timeoutMs, interval: 50 },
  );
}

const warmContainers = (tee: StackWithClient, environmentId?: string) =>
  tee.stack.process.infrastructure.sandbox.listContainers({
    instanceId: tee.stack.config.instanceId,
    pool: 'warm',
    ...(environmentId === undefined ? {} : { environmentId }),
  });

// The execution service's warm pool, through the public API and a real engine: sandboxes are
// started with the main module imported, handed out once, and never reused.
describe('the warm pool', () => {
  const tee = useTestStack();

  async function createEnvironment(main: string, runtime = Runtime.DENO, allowEnv: string[] = []) {
    const { environment } = await tee.client.environments.createEnvironment({
      modules: { 'main.ts': main },
      mainModule: 'main.ts',
      runtime,
      permissions: { allowEnv },
    });
    return environment!.id;
  }
  const execute = async (environmentId: string, data: JsonValue = null, memoryMb = 0) => {
    const { execution } = await tee.client.executions.execute({
      environmentId,
      data: fromJson(ValueSchema, data),
      limits: { memoryMb },
    });
    return execution!;
  };

  describe.each(NAMED_RUNTIMES)('on %s', (_, runtime) => {
    it('never hands out a used sandbox: no marker of an earlier execution survives 50 of them', async () => {
      const id = await createEnvironment(
        `
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
// Both runtimes may read and write /tmp (each sandbox's own tmpfs).
const attempt = <T>(f: () => T): T | null => { try { return f(); } catch { return null; } };
export function handler(event: any) {
  const seen = {
    file: attempt(() => (existsSync('/tmp/marker') ? readFileSync('/tmp/marker', 'utf8') : null)),
    global: (globalThis as any).marker ?? null,
  };
  attempt(() => writeFileSync('/tmp/marker', String(event.data)));
  (globalThis as any).marker = event.data;
  const wrote = attempt(() => readFileSync('/tmp/marker', 'utf8'));
  return { seen, wrote, greeting: process.env.GREETING ?? null };
}`,
        runtime,
        ['GREETING'],
      );
      const runs = [];
      for (let batch = 0; batch < 10; batch++) {
        runs.push(
          ...(await Promise.all(
            [0, 1, 2, 3, 4].map(async (i) => {
              const { execution } = await tee.client.executions.execute({
                environmentId: id,
                data: fromJson(ValueSchema, batch * 5 + i),
                env: { GREETING: `hello ${batch * 5 + i}` },
              });
              return execution!;
            }),
          )),
        );
      }
      expect(runs).toHaveLength(50);
      runs.forEach((run, n) => {
        expect(run.status, JSON.stringify(run.error)).toBe(ExecutionStatus.SUCCEEDED);
        // Per-execution env reaches a sandbox started before the request (it travels in the event).
        expect(toJson(ValueSchema, run.result!)).toEqual({
          seen: { file: null, global: null },
          wrote: String(n),
          greeting: `hello ${n}`,
        });
      });
      expect(runs.filter((run) => run.warm).length).toBeGreaterThan(0);
      await tee.client.environments.deleteEnvironment({ id });
    }, 240_000);
  });

  it('hands a sandbox out only once its main module is loaded', async () => {
    const id = await createEnvironment(`
await new Promise((resolve) => setTimeout(resolve, 3000));
const loadedAt = Date.now();
export function handler() { return loadedAt; }`);
    // environment.created starts one; it counts as starting until the runner says ready.
    const loading = await poolUntil(tee, id, (pool) => pool !== undefined && pool.starting === 1);
    expect(loading?.ready).toBe(0);
    await poolUntil(tee, id, (pool) => pool !== undefined && pool.ready >= 1);
    const requestedAt = Date.now();
    const run = await execute(id);
    expect(run.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(run.warm).toBe(true);
    // Its module had finished loading before the request was sent.
    expect(Number(toJson(ValueSchema, run.result!))).toBeLessThan(requestedAt);
    await tee.client.environments.deleteEnvironment({ id });
  });

  it('gives a request with other limits a cold sandbox of its own size', async () => {
    const id = await createEnvironment('export function handler() { return 1; }');
    await poolUntil(tee, id, (pool) => pool !== undefined && pool.ready >= 1);
    const run = await execute(id, null, 512);
    expect(run.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(run.warm).toBe(false);
    expect(run.coldStartReason).toBe(ColdStartReason.LIMITS);
    expect(run.limits?.memoryMb).toBe(512);
    await tee.client.environments.deleteEnvironment({ id });
  });

  it('removes an environment’s warm sandboxes when it is deleted', async () => {
    const id = await createEnvironment('export function handler() { return 1; }');
    await poolUntil(tee, id, (pool) => pool !== undefined && pool.ready >= 1);
    expect((await warmContainers(tee, id)).length).toBeGreaterThanOrEqual(1);
    await tee.client.environments.deleteEnvironment({ id });
    await expectNothingLabelled(tee.stack.process.infrastructure.sandbox, { environmentId: id });
    await poolUntil(tee, id, (pool) => pool === undefined);
  });

  // Execute checks a request against the pool's copy of the environment while it looks the
  // environment up; the lookup still decides.
  it('answers NotFound right after the delete, records nothing and leaves nothing', async () => {
    const id = await createEnvironment('export function handler() { return 1; }');
    await poolUntil(tee, id, (pool) => pool !== undefined && pool.ready >= 1);
    await tee.client.environments.deleteEnvironment({ id });
    await expect(execute(id)).rejects.toMatchObject({ code: Code.NotFound });
    const { executions } = await tee.client.executions.listExecutions({ environmentId: id });
    expect(executions).toEqual([]);
    await expectNothingLabelled(tee.stack.process.infrastructure.sandbox, { environmentId: id });
  });

  it('leaves nothing when the environment is deleted while its warm sandbox starts', async () => {
    const id = await createEnvironment('export function handler() { return 1; }');
    await poolUntil(tee, id, (pool) => pool?.starting === 1);
    await tee.client.environments.deleteEnvironment({ id });
    await expectNothingLabelled(tee.stack.process.infrastructure.sandbox, { environmentId: id });
  });

  it('replaces a warm sandbox that dies while idle, and never hands it out', async () => {
    const id = await createEnvironment('export function handler() { return 1; }');
    await poolUntil(tee, id, (pool) => pool !== undefined && pool.ready >= 1);
    const [victim] = await warmContainers(tee, id);
    await tee.stack.process.infrastructure.sandbox.removeContainer(victim!.id);
    // The pool notices and starts a replacement, which becomes ready.
    await poolUntil(tee, id, (pool) => pool !== undefined && pool.starting === 1);
    await poolUntil(tee, id, (pool) => pool?.ready === 1 && pool.starting === 0);
    const containers = await warmContainers(tee, id);
    expect(containers).toHaveLength(1);
    expect(containers[0]!.id).not.toBe(victim!.id);
    const run = await execute(id);
    expect(run.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(run.warm).toBe(true);
    await tee.client.environments.deleteEnvironment({ id });
  });
});

// Two warm sandboxes of 256 MiB fit the budget; a third environment gets none, and its
// executions run cold rather than past the budget.
describe('the warm pool’s memory budget', () => {
  const tee = useTestStack({ TEE_POOL_MEMORY_MB: '512' });

  it('keeps all warm sandboxes together within TEE_POOL_MEMORY_MB', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { environment } = await tee.client.environments.createEnvironment({
        ...handlerModules('return 1;'),
        runtime: Runtime.DENO,
      });
      ids.push(environment!.id);
    }
    // Taken sandboxes run executions and are no longer the pool's: only the idle and starting
    // ones count against the budget, sampled all through the run.
    const samples: { reserved: number; pooled: number }[] = [];
    let running = true;
    const sampling = (async () => {
      while (running) {
        const status = await tee.operator.admin.pool.getPoolStatus({});
        expect(status.memoryBudgetMb).toBe(512);
        samples.push({
          reserved: status.reservedMemoryMb,
          pooled: status.environments.reduce((sum, pool) => sum + pool.ready + pool.starting, 0),
        });
        await sleep(50);
      }
    })();
    const runs = await Promise.all(
      ids.flatMap((environmentId) =>
        [0, 1, 2].map(async () => {
          const { execution } = await tee.client.executions.execute({ environmentId });
          return execution!;
        }),
      ),
    );
    running = false;
    await sampling;
    expect(runs.every((run) => run.status === ExecutionStatus.SUCCEEDED)).toBe(true);
    expect(samples.length).toBeGreaterThan(0);
    for (const sample of samples) {
      expect(sample.pooled).toBeLessThanOrEqual(2);
      // Evicted sandboxes still being removed count until they are gone.
      expect(sample.reserved).toBeGreaterThanOrEqual(sample.pooled * 256);
      expect(sample.reserved).toBeLessThanOrEqual(512);
    }
    // With two environments' sandboxes holding the budget, some execution had to run cold.
    expect(runs.some((run) => !run.warm)).toBe(true);
    for (const id of ids) await tee.client.environments.deleteEnvironment({ id });
  });
});
