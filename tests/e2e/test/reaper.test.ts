import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DeletionReason, EnvironmentStatus, ExecutionStatus, Runtime } from '@assist-tee/client';
import { create, fromJson } from '@bufbuild/protobuf';
import { eventHeader } from '@assist-tee/events';
import { EnvironmentDeletedSchema } from '@assist-tee/proto';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { environmentVolumeName } from '@assist-tee/sandbox';
import { denoRuntime } from '@assist-tee/runtime-deno';
import { collectEvents, listLabelled, uniqueSuffix } from '@assist-tee/testing';
import { afterEach, describe, expect, it } from 'vitest';
import {
  allEventsIn,
  expectSettled,
  handlerModules,
  queryRows,
  sumExample,
  useTestStack,
} from '../src/index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const RUNSC_ROOT = '/var/run/docker/runtime-runc/moby';
const runsc = (...args: string[]) => promisify(execFile)('runsc', ['--root', RUNSC_ROOT, ...args]);

/**
 * What a failed runsc start can leave (docs/host-facts.md): a sandbox runsc keeps under the
 * engine's root, with its processes, that Docker does not list.
 */
async function plantStrayRunscSandbox() {
  const bundle = await mkdtemp(join(tmpdir(), 'tee-stray-'));
  await mkdir(join(bundle, 'rootfs'));
  await promisify(execFile)('runsc', ['spec'], { cwd: bundle });
  const id = `tee-stray-${uniqueSuffix()}`;
  // The sandbox's processes keep whatever stdio they get: none, or the call would wait for them.
  const create = spawn(
    'runsc',
    ['--root', RUNSC_ROOT, '--network=none', 'create', '--bundle', bundle, id],
    { stdio: 'ignore' },
  );
  const [code] = (await once(create, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`runsc create exited with ${code}`);
  const { pid } = JSON.parse((await runsc('state', id)).stdout) as { pid: number };
  return {
    id,
    pid,
    async cleanUp() {
      await runsc('delete', '--force', id).catch(() => undefined);
      await rm(bundle, { recursive: true, force: true });
    },
  };
}

describe('the reaper, and deletion under a running execution', () => {
  // No grace: what the test plants is swept at once. Interval sweeps stay out of the way.
  const tee = useTestStack({ TEE_ORPHAN_GRACE_MS: '0', TEE_SWEEP_INTERVAL_MS: '3600000' });
  afterEach(() =>
    expectSettled({
      sandbox: tee.stack.process.infrastructure.sandbox,
      databaseUrl: tee.stack.config.databaseUrl,
      labels: { instanceId: tee.stack.config.instanceId },
    }),
  );

  it('expires environments past their TTL, once, even with two sweeps at the same time', async () => {
    const events = await collectEvents(
      tee.stack.config.nats.servers,
      tee.stack.config.nats.subjectPrefix,
    );
    try {
      const create = (ttlSeconds: number) =>
        tee.client.environments.createEnvironment({
          ...sumExample,
          runtime: Runtime.DENO,
          ttlSeconds,
        });
      const short = [(await create(1)).environment!, (await create(1)).environment!];
      const long = (await create(3600)).environment!;
      await sleep(1_200);

      const reports = await Promise.all([
        tee.operator.admin.reaper.sweep({}),
        tee.operator.admin.reaper.sweep({}),
      ]);
      const expired = reports.map((response) => response.report!.expiredEnvironments);
      expect(expired[0]! + expired[1]!).toBe(2);
      for (const environment of short) {
        const { environment: after } = await tee.client.environments.getEnvironment({
          id: environment.id,
        });
        expect(after!.status).toBe(EnvironmentStatus.DELETED);
        const left = await listLabelled(tee.stack.process.infrastructure.sandbox, {
          environmentId: environment.id,
        });
        expect(left).toEqual({ containers: [], volumes: [] });
      }
      // Each expired once: one environment.deleted each, and no more on its way.
      const deletions = (await allEventsIn(tee.stack.config.databaseUrl, events)).flatMap(
        (event) => (event.type === 'environment.deleted' ? [event.message] : []),
      );
      expect(deletions.map((deleted) => deleted.environmentId).sort()).toEqual(
        short.map((environment) => environment.id).sort(),
      );
      for (const deleted of deletions) expect(deleted.reason).toBe(DeletionReason.EXPIRED);
      // The long-lived one is untouched and still runs.
      const { execution } = await tee.client.executions.execute({
        environmentId: long.id,
        data: fromJson(ValueSchema, { a: 1, b: 2 }),
      });
      expect(execution!.status).toBe(ExecutionStatus.SUCCEEDED);
      const status = await tee.operator.admin.reaper.getStatus({});
      expect(status.lastSweep?.finishTime).toBeDefined();
      await tee.client.environments.deleteEnvironment({ id: long.id });
    } finally {
      await events.stop();
    }
  });

  it('removes containers and volumes that nothing owns, and leaves the rest', async () => {
    const driver = tee.stack.process.infrastructure.sandbox;
    const { environment } = await tee.client.environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
    });
    // What a crashed service leaves: a volume of an environment that does not exist, and a
    // sandbox of an execution that does not either.
    const ghost = randomUUID();
    const labels = {
      owner: 'execution',
      instanceId: tee.stack.config.instanceId,
      environmentId: ghost,
      executionId: randomUUID(),
    };
    await driver.createVolume(environmentVolumeName(ghost), labels);
    const orphan = await driver.start({
      image: denoRuntime.image,
      cmd: ['eval', 'setTimeout(() => {}, 60_000)'],
      env: [],
      volume: { name: environmentVolumeName(ghost), target: '/code', readOnly: true },
      limits: { memoryBytes: 128 << 20, nanoCpus: 1e9, pidsLimit: 256, tmpfsBytes: 1 << 20 },
      labels,
    });

    const stray = await plantStrayRunscSandbox();

    const { report } = await tee.operator.admin.reaper.sweep({}).finally(() => stray.cleanUp());
    expect(report!.removedContainers).toBeGreaterThanOrEqual(1);
    expect(report!.removedVolumes).toBeGreaterThanOrEqual(1);
    expect(report!.removedRunscSandboxes).toBeGreaterThanOrEqual(1);
    expect(report!.errors).toEqual([]);
    expect((await runsc('list')).stdout).not.toContain(stray.id);
    expect(() => process.kill(stray.pid, 0)).toThrow();
    expect(await listLabelled(driver, { environmentId: ghost })).toEqual({
      containers: [],
      volumes: [],
    });
    await orphan.remove();
    // The live environment keeps its volume.
    const kept = await listLabelled(driver, { environmentId: environment!.id });
    expect(kept.volumes).toHaveLength(1);
    await tee.client.environments.deleteEnvironment({ id: environment!.id });
  });

  /**
   * Waits until an execution of the environment runs. Its row is written as the handler starts;
   * a running container alone does not say so (a warm sandbox waits in the pool).
   */
  const executionRunning = (environmentId: string) =>
    expect
      .poll(
        async () =>
          (
            await queryRows(
              tee.stack.config.databaseUrl,
              `select id from execution.execution where environment_id = $1 and status = 'RUNNING'`,
              [environmentId],
            )
          ).length,
        { timeout: 30_000 },
      )
      .toBe(1);

  it('ends an execution whose environment is deleted under it, sandbox before volume', async () => {
    const { environment } = await tee.client.environments.createEnvironment({
      ...handlerModules('await new Promise((resolve) => setTimeout(resolve, 60_000));'),
      runtime: Runtime.BUN,
    });
    const id = environment!.id;
    const driver = tee.stack.process.infrastructure.sandbox;
    const running = tee.client.executions.execute({
      environmentId: id,
      limits: { timeoutMs: 120_000 },
    });
    await executionRunning(id);
    await tee.client.environments.deleteEnvironment({ id });
    const { execution } = await running;
    expect(execution!.status).toBe(ExecutionStatus.SANDBOX_ERROR);
    expect(execution!.error?.name).toBe('EnvironmentDeleted');
    expect(await listLabelled(driver, { environmentId: id })).toEqual({
      containers: [],
      volumes: [],
    });
  });

  it('stops its executions on environment.deleted from elsewhere (another host deleted it)', async () => {
    const { environment } = await tee.client.environments.createEnvironment({
      ...handlerModules('await new Promise((resolve) => setTimeout(resolve, 60_000));'),
      runtime: Runtime.DENO,
    });
    const id = environment!.id;
    const { bus, sandbox: driver } = tee.stack.process.infrastructure;
    const running = tee.client.executions.execute({
      environmentId: id,
      limits: { timeoutMs: 120_000 },
    });
    await executionRunning(id);
    // Only the event: this engine's containers are not touched by a deletion.
    await bus.publish(
      'environment.deleted',
      create(EnvironmentDeletedSchema, {
        ...eventHeader(),
        environmentId: id,
        reason: DeletionReason.REQUESTED,
      }),
    );
    const { execution } = await running;
    expect(execution!.status).toBe(ExecutionStatus.SANDBOX_ERROR);
    expect(execution!.error?.name).toBe('EnvironmentDeleted');
    // Its sandbox, and any warm one of the environment, is removed on the event alone.
    await expect
      .poll(async () => (await listLabelled(driver, { environmentId: id })).containers)
      .toEqual([]);
    await tee.client.environments.deleteEnvironment({ id });
  });
});
