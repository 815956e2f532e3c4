import { fromJson, toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { collectEvents, waitForRunning } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  expectSettled,
  handlerModules,
  type ProcessTestBed,
  queryRows,
  type ServiceProcess,
  stopService,
  startProcessTestBed,
} from '../src/index.js';

const GRACE_MS = 5_000;

// Real processes and a real SIGTERM: what is in hand finishes or is cut short, nothing is left.
describe('graceful shutdown on SIGTERM', () => {
  let bed: ProcessTestBed;
  let environments: ServiceProcess;

  beforeAll(async () => {
    bed = await startProcessTestBed();
    // No grace for setups: a SIGTERM cuts an install short at once.
    environments = await bed.start('environments', { TEE_SHUTDOWN_GRACE_MS: '0' });
  });
  afterAll(() => bed?.tearDown());

  const code = (error: unknown) => (error instanceof ConnectError ? error.code : error);

  it('lets executions finish within the grace, cuts the rest short, refuses new ones', async () => {
    const { sandbox, instanceId } = bed;
    const events = await collectEvents(bed.natsUrl, bed.subjectPrefix);
    try {
      const execution = await bed.start('execution', {
        TEE_ENVIRONMENTS_URL: environments.url,
        TEE_SHUTDOWN_GRACE_MS: String(GRACE_MS),
      });
      const environmentsClient = bed.client(environments.url);
      const { environment } = await environmentsClient.environments.createEnvironment({
        ...handlerModules(
          'await new Promise((resolve) => setTimeout(resolve, event.data.ms)); return event.data.ms;',
        ),
        runtime: Runtime.DENO,
      });
      const client = bed.client(execution.url);
      const run = (ms: number) =>
        client.executions.execute({
          environmentId: environment!.id,
          data: fromJson(ValueSchema, { ms }),
          limits: { timeoutMs: 200_000 },
        });
      const short = run(1_500);
      const long = run(120_000);
      await waitForRunning(sandbox, { instanceId, owner: 'execution' }, 2);

      const signalled = Date.now();
      const exited = stopService(execution, 'SIGTERM');
      // It logs "stopping" as it starts to refuse new work.
      await vi.waitFor(() => expect(execution.logs.map((line) => line.msg)).toContain('stopping'), {
        timeout: 10_000,
      });
      expect(await run(1).catch(code)).toBe(Code.Unavailable);

      const [shortDone, longDone] = await Promise.all([short, long]);
      expect(shortDone.execution?.status).toBe(ExecutionStatus.SUCCEEDED);
      expect(toJson(ValueSchema, shortDone.execution!.result!)).toBe(1_500);
      expect(longDone.execution?.status).toBe(ExecutionStatus.SANDBOX_ERROR);
      expect(longDone.execution?.error?.name).toBe('ServiceStopping');
      expect(await exited).toBe(0);
      const shutdownMs = Date.now() - signalled;
      expect(shutdownMs).toBeGreaterThanOrEqual(GRACE_MS);
      expect(shutdownMs).toBeLessThan(GRACE_MS + 10_000);

      const rows = await queryRows<{ id: string; status: string }>(
        bed.databaseUrl,
        'select id, status from execution.execution order by created_at',
      );
      expect(rows.map((row) => row.status).sort()).toEqual(['SANDBOX_ERROR', 'SUCCEEDED']);
      // Both outcomes were published before the process exited, once each.
      const ids = rows.map((row) => row.id);
      const finished = events.events.filter(
        (event) => event.type === 'execution.finished' && ids.includes(event.message.execution!.id),
      );
      expect(finished).toHaveLength(2);
      await environmentsClient.environments.deleteEnvironment({ id: environment!.id });
      await expectSettled({ sandbox, databaseUrl: bed.databaseUrl, labels: { instanceId } });
    } finally {
      await events.stop();
    }
  });

  it('cuts a dependency install short: the environment is FAILED and nothing is left', async () => {
    const client = bed.client(environments.url);
    const creating = client.environments
      .createEnvironment({
        ...handlerModules('return 1;'),
        runtime: Runtime.BUN,
        dependencies: { npm: ['is-number@7.0.0'] },
      })
      .catch((error: unknown) => error);
    await waitForRunning(bed.sandbox, { instanceId: bed.instanceId, owner: 'environments' });
    expect(await stopService(environments, 'SIGTERM')).toBe(0);

    const refused = await creating;
    expect(code(refused)).toBe(Code.Unavailable);
    expect((refused as ConnectError).rawMessage).toMatch(/stopped before the setup finished/);
    const rows = await queryRows<{ status: string; error: string }>(
      bed.databaseUrl,
      'select status, error from environments.environment where runtime = $1',
      ['BUN'],
    );
    expect(rows).toEqual([
      { status: 'FAILED', error: 'the environments service stopped before the setup finished' },
    ]);
    await expectSettled({
      sandbox: bed.sandbox,
      databaseUrl: bed.databaseUrl,
      labels: { instanceId: bed.instanceId },
    });
  });
});
