import { fromJson, toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { connectEventBus, type EventBus, type EventType, eventTypes } from '@assist-tee/events';
import { createLogger } from '@assist-tee/logger';
import {
  type PrivateServer,
  startPrivateNatsServer,
  startPrivatePostgresServer,
  streamMessageCount,
  waitForRunning,
} from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  expectSettled,
  handlerModules,
  pendingEvents,
  type ProcessTestBed,
  queryRows,
  type ServiceProcess,
  startProcessTestBed,
} from '../src/index.js';

// The services as separate processes, on a NATS and a Postgres of this test's own, which it
// stops and starts under them while environments are created and executed.
describe('NATS and Postgres going away under a running system', () => {
  let nats: PrivateServer;
  let postgres: PrivateServer;
  let bed: ProcessTestBed;
  let environments: ServiceProcess;
  let execution: ServiceProcess;
  let observerBus: EventBus;
  /** What a durable consumer of every event type received: event id → stream sequences. */
  const observed = new Map<string, { type: EventType; sequences: Set<number> }>();

  const client = () => ({
    environments: bed.client(environments.url).environments,
    executions: bed.client(execution.url).executions,
  });
  const code = (error: unknown) => (error instanceof ConnectError ? error.code : error);
  const health = async (service: ServiceProcess) => (await fetch(`${service.url}/healthz`)).status;

  beforeAll(async () => {
    [nats, postgres] = await Promise.all([startPrivateNatsServer(), startPrivatePostgresServer()]);
    bed = await startProcessTestBed({ database: postgres, natsUrl: nats.url });
    environments = await bed.start('environments');
    execution = await bed.start('execution', { TEE_ENVIRONMENTS_URL: environments.url });
    observerBus = await connectEventBus({
      servers: nats.url,
      subjectPrefix: bed.subjectPrefix,
      name: 'observer',
      logger: createLogger({ level: 'silent' }),
    });
    await observerBus.consume({
      durable: 'observer',
      types: Object.keys(eventTypes) as EventType[],
      handle: (event) => {
        const entry = observed.get(event.message.eventId) ?? {
          type: event.type,
          sequences: new Set<number>(),
        };
        entry.sequences.add(event.streamSequence);
        observed.set(event.message.eventId, entry);
      },
    });
  });
  afterAll(async () => {
    await observerBus?.close();
    await bed?.tearDown();
    await Promise.all([nats?.destroy(), postgres?.destroy()]);
  });

  const expectNothingLeft = () =>
    expectSettled({
      sandbox: bed.sandbox,
      databaseUrl: postgres.url,
      labels: { instanceId: bed.instanceId },
    });

  it('keeps serving while NATS is down; every event arrives once it is back, once per id', async () => {
    const api = client();
    const run = (environmentId: string) =>
      api.executions.execute({ environmentId }).then(({ execution: e }) => e!.status);
    const { environment: first } = await api.environments.createEnvironment({
      ...handlerModules('return 1;'),
      runtime: Runtime.DENO,
    });
    expect(await run(first!.id)).toBe(ExecutionStatus.SUCCEEDED);

    await nats.stop();
    expect(await health(environments)).toBe(503);
    const { environment: second } = await api.environments.createEnvironment({
      ...handlerModules('return 2;'),
      runtime: Runtime.BUN,
    });
    const statuses = await Promise.all([first, first, second, second].map((e) => run(e!.id)));
    expect(statuses).toEqual(Array(4).fill(ExecutionStatus.SUCCEEDED));
    await api.environments.deleteEnvironment({ id: second!.id });
    expect(await pendingEvents(postgres.url)).toBeGreaterThan(0);

    await nats.start();
    const written = await queryRows<{ event_id: string; type: string }>(
      postgres.url,
      `select event_id, type from environments.outbox
       union all select event_id, type from execution.outbox`,
    );
    // Every event arrives, and with the outboxes drained nothing is published any more.
    await vi.waitFor(
      async () => {
        expect(written.filter((row) => !observed.has(row.event_id))).toEqual([]);
        expect(await pendingEvents(postgres.url)).toBe(0);
      },
      { timeout: 60_000, interval: 100 },
    );
    // One copy in the stream per event id: a re-publish after the outage was deduplicated.
    expect(await streamMessageCount(nats.url, observerBus.streamName)).toBe(written.length);
    const counts: Record<string, number> = {};
    for (const [, { type, sequences }] of observed) {
      expect(sequences.size).toBe(1);
      counts[type] = (counts[type] ?? 0) + 1;
    }
    expect(counts).toEqual({
      'environment.created': 2,
      'environment.deleted': 1,
      'execution.started': 5,
      'execution.finished': 5,
    });
    // The environments service's own durable consumer caught up too.
    await vi.waitFor(
      async () => {
        const { environment } = await api.environments.getEnvironment({ id: first!.id });
        expect(environment!.executionCount).toBe(3n);
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(await health(environments)).toBe(200);

    await api.environments.deleteEnvironment({ id: first!.id });
    await expectNothingLeft();
  });

  it('answers Unavailable while Postgres restarts, keeps the outcome of what ran, and recovers', async () => {
    const api = client();
    const { environment } = await api.environments.createEnvironment({
      ...handlerModules(
        'await new Promise((resolve) => setTimeout(resolve, event.data.ms)); return event.data.ms;',
      ),
      runtime: Runtime.DENO,
    });
    const id = environment!.id;
    const run = (ms: number) =>
      api.executions.execute({ environmentId: id, data: fromJson(ValueSchema, { ms }) });
    // Finishes while Postgres is down: its outcome waits for the database.
    const acrossTheOutage = run(1_500);
    await waitForRunning(bed.sandbox, { instanceId: bed.instanceId, owner: 'execution' });

    await postgres.stop();
    const whileDown = await Promise.all(
      [
        api.environments.createEnvironment({
          ...handlerModules('return 1;'),
          runtime: Runtime.DENO,
        }),
        run(1),
        api.executions.listExecutions({ environmentId: id }),
        api.environments.getEnvironment({ id }),
      ].map((call) => call.then(() => 'answered', code)),
    );
    expect(whileDown).toEqual(Array(4).fill(Code.Unavailable));
    expect(await health(environments)).toBe(503);
    expect(await health(execution)).toBe(503);
    // The run finishes while the database is down, and its outcome waits for it.
    await vi.waitFor(
      () =>
        expect(execution.logs.map((line) => line.msg)).toContain(
          'the outcome waits for the database',
        ),
      { timeout: 20_000, interval: 100 },
    );
    await postgres.start();

    const kept = (await acrossTheOutage).execution!;
    expect(kept.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(toJson(ValueSchema, kept.result!)).toBe(1_500);
    // Both services are back without a restart of their own.
    const after = (await run(1)).execution!;
    expect(after.status).toBe(ExecutionStatus.SUCCEEDED);
    expect(await health(environments)).toBe(200);
    expect(await health(execution)).toBe(200);
    const { executions } = await api.executions.listExecutions({ environmentId: id });
    expect(executions.map((e) => e.status)).toEqual(Array(2).fill(ExecutionStatus.SUCCEEDED));

    await api.environments.deleteEnvironment({ id });
    await expectNothingLeft();
  });
});
