import { type Client, createClient, type ServiceImpl } from '@connectrpc/connect';
import {
  ExecutionIdempotencyKeyEntity,
  ExecutionOutboxEntity,
  executionSchema,
  openDatabase,
} from '@assist-tee/db';
import { startOutbox } from '@assist-tee/outbox';
import { detached } from '@assist-tee/tracing';
import { admin, EnvironmentService, ExecutionService, SessionService } from '@assist-tee/proto';
import { bunRuntime } from '@assist-tee/runtime-bun';
import type { SandboxRuntimes } from '@assist-tee/runtime-core';
import { denoRuntime } from '@assist-tee/runtime-deno';
import type { Consumption } from '@assist-tee/events';
import {
  abortReason,
  ConcurrencyQuota,
  createIdempotency,
  instanceLimit,
  InFlight,
  serviceTransport,
  type Infrastructure,
  requireSandboxRuntime,
  type Service,
} from '@assist-tee/server';
import { onEnvironmentEvent } from './consumers/environment-events.js';
import type { CoreDeps, ExecutionDeps } from './deps.js';
import { type Egress, startEgress } from './egress.js';
import { finishAbandonedExecutions } from './recover.js';
import { createSession } from './rpc/create-session.js';
import { endSession } from './rpc/end-session.js';
import { execute } from './rpc/execute.js';
import { executeStream } from './rpc/execute-stream.js';
import { getExecution } from './rpc/get-execution.js';
import { getPoolStatus } from './rpc/get-pool-status.js';
import { getSession } from './rpc/get-session.js';
import { listSessions } from './rpc/list-sessions.js';
import { sessionSandboxes } from './rpc/session-sandboxes.js';
import { listExecutions } from './rpc/list-executions.js';
import { isEnvironmentDeleted } from './environment-deleted.js';
import { ExecutionMetrics } from './execution-metrics.js';
import { SandboxMetrics } from './sandbox-metrics.js';
import { ExecutionWriter } from './execution-writer.js';
import { launchSandbox } from './launch.js';
import { Sessions } from './sessions.js';
import { WarmPool } from './warm-pool.js';

/** A per-instance consumer left by an instance that is gone is removed after this. */
const INSTANCE_CONSUMER_TTL_MS = 60 * 60_000;

export interface ExecutionServiceOptions {
  /** How to reach the EnvironmentService; by default over HTTP at config.environmentsUrl. */
  environments?: Client<typeof EnvironmentService>;
}

/** The ExecutionService with its own database schema ("execution"). */
export async function createExecutionService(
  infrastructure: Infrastructure,
  options: ExecutionServiceOptions = {},
): Promise<Service> {
  const { config, bus, sandbox } = infrastructure;
  const logger = infrastructure.logger.child({ subsystem: 'execution' });
  const runtimes: SandboxRuntimes = { deno: denoRuntime, bun: bunRuntime };
  const warnings = await requireSandboxRuntime(
    sandbox,
    config,
    Object.values(runtimes).map((runtime) => runtime.image),
    logger,
  );
  const db = await openDatabase({
    url: config.databaseUrl,
    ...executionSchema,
    logger,
  });
  let egress: Egress;
  try {
    egress = await startEgress(
      sandbox,
      config.egress,
      logger.child({ subsystem: 'egress' }),
      config.instanceId,
    );
  } catch (error) {
    await db.close();
    throw error;
  }
  const outbox = startOutbox({
    db,
    entity: ExecutionOutboxEntity,
    bus,
    logger: logger.child({ component: 'outbox' }),
    registry: infrastructure.metrics.registry,
  });
  const environments =
    options.environments ??
    createClient(EnvironmentService, serviceTransport(config, config.environmentsUrl));
  const sandboxMetrics = new SandboxMetrics(infrastructure.metrics.registry);
  const launchDeps = { config, logger, sandbox, runtimes, egress, sandboxMetrics };
  const pool = new WarmPool({
    settings: config.pool,
    sandboxMemoryMb: config.execution.defaults.memoryMb,
    memory: infrastructure.sandboxMemory,
    // A refill is the pool's own work, not part of the call that set it off: its own trace.
    launch: (environment, memory) =>
      detached(() =>
        launchSandbox(launchDeps, environment, config.execution.defaults, { pool: 'warm' }, memory),
      ),
    isDeleted: (environmentId) => isEnvironmentDeleted(environments, environmentId),
    logger: logger.child({ component: 'pool' }),
  });
  const core: CoreDeps = {
    ...launchDeps,
    db,
    bus,
    outbox,
    writer: new ExecutionWriter({ db, outbox }),
    metrics: new ExecutionMetrics(
      infrastructure.metrics.registry,
      pool,
      config.pool.memoryBudgetMb,
    ),
    pool,
    work: new InFlight('execution'),
    idempotency: createIdempotency({
      db,
      entity: ExecutionIdempotencyKeyEntity,
      instanceId: config.instanceId,
      retentionMs: config.idempotency.retentionMs,
      logger: logger.child({ component: 'idempotency' }),
    }),
    environments,
    executionQuota: new ConcurrencyQuota(
      config.quotas.concurrentExecutions,
      'executions',
      'TEE_QUOTA_CONCURRENT_EXECUTIONS',
    ),
    runningExecutions: instanceLimit(
      config.capacity.maxRunningExecutions,
      'executions',
      'TEE_MAX_RUNNING_EXECUTIONS',
    ),
    memory: infrastructure.sandboxMemory,
    warnings,
  };
  const deps: ExecutionDeps = { ...core, sessions: new Sessions(core) };
  const implementation: ServiceImpl<typeof ExecutionService> = {
    execute: execute(deps),
    executeStream: executeStream(deps),
    getExecution: getExecution(deps),
    listExecutions: listExecutions(deps),
  };
  let stuckSweep: NodeJS.Timeout | undefined;
  let consumer: Consumption | undefined;
  return {
    name: 'execution',
    routes: (router) =>
      router
        .service(ExecutionService, implementation)
        .service(SessionService, {
          createSession: createSession(deps),
          getSession: getSession(deps),
          listSessions: listSessions(deps),
          endSession: endSession(deps),
        })
        .service(admin.WarmPoolService, { getPoolStatus: getPoolStatus(deps) })
        .service(admin.SessionSandboxService, sessionSandboxes(deps)),
    healthChecks: [{ name: 'postgres:execution', check: () => db.ping() }],
    warnings,
    start: async () => {
      await finishAbandonedExecutions(deps, 'own');
      await deps.sessions.endOwnLost();
      // Keys this instance left running are cut off like its executions: retries are Aborted.
      await deps.idempotency.start();
      stuckSweep = setInterval(() => {
        finishAbandonedExecutions(deps, 'stuck').catch((error: unknown) => {
          logger.error({ err: error }, 'finishing stuck executions failed');
        });
      }, config.execution.stuckSweepMs);
      stuckSweep.unref();
      // Each instance keeps its own pool and stops its own sandboxes, so each has its own
      // consumer; only events from now on matter to it.
      consumer = await bus.consume({
        durable: `execution-${config.instanceId.replace(/[^A-Za-z0-9_-]/g, '_')}`,
        metricsName: 'execution',
        types: ['environment.created', 'environment.deleted'],
        deliver: 'new',
        inactiveThresholdMs: INSTANCE_CONSUMER_TTL_MS,
        handle: onEnvironmentEvent(deps),
      });
    },
    drain: (graceMs) =>
      deps.work.drain(
        graceMs,
        abortReason(
          'ServiceStopping',
          'the execution service stopped before the handler finished; its sandbox was removed',
        ),
      ),
    stop: async () => {
      clearInterval(stuckSweep);
      deps.idempotency.stop();
      await consumer?.stop();
      await deps.sessions.close();
      await pool.close();
      await egress.close();
      await outbox.close();
      await db.close();
    },
  };
}
