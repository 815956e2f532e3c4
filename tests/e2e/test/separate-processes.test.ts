import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { fromJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type ProcessTestBed,
  type ServiceProcess,
  startProcessTestBed,
  stopService,
  sumExample,
} from '../src/index.js';

describe('each service as its own process', () => {
  let bed: ProcessTestBed;
  const services: Record<string, ServiceProcess> = {};

  beforeAll(async () => {
    bed = await startProcessTestBed();
    services.environments = await bed.start('environments');
    services.reaper = await bed.start('reaper');
    services.execution = await bed.start('execution', {
      TEE_ENVIRONMENTS_URL: services.environments.url,
    });
  });
  afterAll(() => bed?.tearDown());

  it('serves /healthz on every process', async () => {
    for (const service of Object.values(services)) {
      const response = await fetch(`${service.url}/healthz`);
      expect(response.status).toBe(200);
    }
  });

  it('sets up on one process, executes on another, and the reaper sees the events', async () => {
    const environments = bed.client(services.environments!.url).environments;
    const executions = bed.client(services.execution!.url).executions;
    const reaper = bed.client(services.reaper!.url, true).admin.reaper;

    const { environment } = await environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
    });
    const { execution } = await executions.execute({
      environmentId: environment!.id,
      data: fromJson(ValueSchema, { a: 20, b: 22 }),
    });
    expect(execution?.status).toBe(ExecutionStatus.SUCCEEDED);
    await environments.deleteEnvironment({ id: environment!.id });

    await vi.waitFor(
      async () =>
        expect((await reaper.getStatus({})).eventsConsumed).toEqual({
          'environment.created': 1n,
          'execution.started': 1n,
          'execution.finished': 1n,
          'environment.deleted': 1n,
        }),
      { timeout: 10_000, interval: 200 },
    );
  });

  it('serves each operator service from the process it reports on, to the services’ key only', async () => {
    const execution = services.execution!.url;
    const reaper = services.reaper!.url;
    const pool = await bed.client(execution, true).admin.pool.getPoolStatus({});
    expect(pool.environments).toEqual([]);
    const status = await bed.client(reaper, true).admin.reaper.getStatus({});
    expect(status.instanceId).toBe(bed.instanceId);
    expect(
      await Promise.all(
        [
          bed.client(execution).admin.pool.getPoolStatus({}),
          bed.client(reaper).admin.reaper.sweep({}),
          // Each process serves only its own: the execution service holds no reaper.
          bed.client(execution, true).admin.reaper.getStatus({}),
        ].map((call) =>
          call.then(
            () => 'ok',
            (e: unknown) => Code[ConnectError.from(e).code],
          ),
        ),
      ),
    ).toEqual(['PermissionDenied', 'PermissionDenied', 'Unimplemented']);
  });

  it('stops cleanly on SIGTERM', async () => {
    for (const name of ['execution', 'reaper', 'environments']) {
      expect(await stopService(services[name]!)).toBe(0);
    }
  });
});
