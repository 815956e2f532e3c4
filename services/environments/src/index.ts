import type { ServiceImpl } from '@connectrpc/connect';
import {
  EnvironmentsIdempotencyKeyEntity,
  EnvironmentsOutboxEntity,
  environmentsSchema,
  openDatabase,
} from '@assist-tee/db';
import type { Consumption } from '@assist-tee/events';
import { startOutbox } from '@assist-tee/outbox';
import { EnvironmentService } from '@assist-tee/proto';
import { bunRuntime } from '@assist-tee/runtime-bun';
import type { SandboxRuntimes } from '@assist-tee/runtime-core';
import { denoRuntime } from '@assist-tee/runtime-deno';
import {
  abortReason,
  ConcurrencyQuota,
  createIdempotency,
  instanceLimit,
  InFlight,
  type Infrastructure,
  isUnreachable,
  requireSandboxRuntime,
  type Service,
} from '@assist-tee/server';
import { recordExecutionFinished } from './consumers/record-execution.js';
import type { EnvironmentsDeps } from './deps.js';
import { prepareSetupNetwork } from './setup/setup-network.js';
import { createEnvironment } from './rpc/create-environment.js';
import { deleteEnvironment } from './rpc/delete-environment.js';
import { getEnvironment } from './rpc/get-environment.js';
import { listEnvironments } from './rpc/list-environments.js';
import { watchEnvironment } from './rpc/watch-environment.js';
import { SetupProgress } from './setup/progress.js';
import { SetupMetrics } from './setup/setup-metrics.js';

export { validateCreateRequest, modulePathProblem } from './validate-create.js';

/** The EnvironmentService with its own database schema ("environments"). */
export async function createEnvironmentsService(infrastructure: Infrastructure): Promise<Service> {
  const { config, bus, sandbox } = infrastructure;
  const logger = infrastructure.logger.child({ subsystem: 'environments' });
  const runtimes: SandboxRuntimes = { deno: denoRuntime, bun: bunRuntime };
  // Modules are written through a created (never started) container of the runtime's image.
  const warnings = await requireSandboxRuntime(
    sandbox,
    config,
    Object.values(runtimes).map((runtime) => runtime.image),
    logger,
  );
  const db = await openDatabase({
    url: config.databaseUrl,
    ...environmentsSchema,
    logger,
  });
  try {
    await prepareSetupNetwork(sandbox, config.setup);
  } catch (error) {
    await db.close();
    throw error;
  }
  const outbox = startOutbox({
    db,
    entity: EnvironmentsOutboxEntity,
    bus,
    logger: logger.child({ component: 'outbox' }),
    registry: infrastructure.metrics.registry,
  });
  const work = new InFlight('environments');
  const idempotency = createIdempotency({
    db,
    entity: EnvironmentsIdempotencyKeyEntity,
    instanceId: config.instanceId,
    retentionMs: config.idempotency.retentionMs,
    logger: logger.child({ component: 'idempotency' }),
  });
  const deps: EnvironmentsDeps = {
    config,
    logger,
    db,
    bus,
    sandbox,
    runtimes,
    outbox,
    work,
    idempotency,
    setupProgress: new SetupProgress(),
    setupQuota: new ConcurrencyQuota(
      config.quotas.concurrentSetups,
      'setups',
      'TEE_QUOTA_CONCURRENT_SETUPS',
    ),
    runningSetups: instanceLimit(
      config.capacity.maxRunningSetups,
      'setups',
      'TEE_MAX_RUNNING_SETUPS',
    ),
    memory: infrastructure.sandboxMemory,
    metrics: new SetupMetrics(infrastructure.metrics.registry),
    warnings,
  };
  let consumer: Consumption | undefined;
  const implementation: ServiceImpl<typeof EnvironmentService> = {
    createEnvironment: createEnvironment(deps),
    getEnvironment: getEnvironment(deps),
    listEnvironments: listEnvironments(deps),
    deleteEnvironment: deleteEnvironment(deps),
    watchEnvironment: watchEnvironment(deps),
  };
  return {
    name: 'environments',
    routes: (router) => router.service(EnvironmentService, implementation),
    healthChecks: [{ name: 'postgres:environments', check: () => db.ping() }],
    warnings,
    start: async () => {
      await idempotency.start();
      consumer = await bus.consume({
        durable: 'environments',
        types: ['execution.finished'],
        handle: recordExecutionFinished(deps),
        // Postgres restarting: wait for it rather than spend the event's deliveries.
        isTransient: isUnreachable,
      });
    },
    drain: (graceMs) =>
      work.drain(
        graceMs,
        abortReason(
          'ServiceStopping',
          'the environments service stopped before the setup finished',
        ),
      ),
    stop: async () => {
      idempotency.stop();
      await consumer?.stop();
      await outbox.close();
      await db.close();
    },
  };
}
