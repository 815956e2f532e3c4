import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { type Client, createClient, type ServiceImpl } from '@connectrpc/connect';
import { openDatabase, reaperSchema, SweepEntity } from '@assist-tee/db';
import { type Consumption, type EventType, eventTypes } from '@assist-tee/events';
import { admin, EnvironmentService, ExecutionService } from '@assist-tee/proto';
import {
  abortReason,
  InFlight,
  type Infrastructure,
  type Service,
  serviceTransport,
} from '@assist-tee/server';
import { inSpan } from '@assist-tee/tracing';
import { ReaperMetrics } from './reaper-metrics.js';
import { sweep } from './sweep.js';

export interface ReaperServiceOptions {
  /** How to reach the other services; by default over HTTP at the configured URLs. */
  environments?: Client<typeof EnvironmentService>;
  executions?: Client<typeof ExecutionService>;
  sessions?: Client<typeof admin.SessionSandboxService>;
}

/**
 * The operator API's ReaperService (admin.v1; the auth layer refuses tenants' keys): sweeps on an interval and on Sweep (TTL expiry, lost sessions,
 * orphan containers, volumes and runsc sandboxes), one replica at a time under a Postgres advisory lock, and records each sweep so
 * GetStatus on any replica reports the last one. It also follows every event through a
 * durable consumer and counts them.
 */
export async function createReaperService(
  infrastructure: Infrastructure,
  options: ReaperServiceOptions = {},
): Promise<Service> {
  const { bus, config, sandbox } = infrastructure;
  const logger = infrastructure.logger.child({ subsystem: 'reaper' });
  const startTime = new Date();
  const consumed = new Map<string, bigint>();
  let consumer: Consumption | undefined;
  let interval: NodeJS.Timeout | undefined;
  const apart = (baseUrl: string) => serviceTransport(config, baseUrl);
  const deps = {
    environments:
      options.environments ?? createClient(EnvironmentService, apart(config.environmentsUrl)),
    executions: options.executions ?? createClient(ExecutionService, apart(config.executionUrl)),
    sessions:
      options.sessions ?? createClient(admin.SessionSandboxService, apart(config.executionUrl)),
    sandbox,
    logger,
    orphanGraceMs: config.reaper.orphanGraceMs,
    warmMaxAgeMs:
      config.pool.idleMs + config.execution.maxima.timeoutMs + config.execution.startupTimeoutMs,
    runsc:
      config.docker.runscPath === 'off'
        ? undefined
        : { path: config.docker.runscPath, root: config.docker.runscRoot },
  };
  const db = await openDatabase({
    url: config.databaseUrl,
    ...reaperSchema,
    logger,
  });
  const metrics = new ReaperMetrics(infrastructure.metrics.registry);

  // A sweep in progress is work a stopping reaper waits for.
  const work = new InFlight('reaper');
  /** Sweeps under the lock; without `wait`, gives up at once when another replica sweeps. */
  const sweepOnce = (wait: boolean): Promise<SweepEntity | undefined> =>
    work.run(() => lockedSweep(wait));
  const lockedSweep = (wait: boolean): Promise<SweepEntity | undefined> =>
    db.em().transactional(async (em) => {
      const key = [`assist_tee:sweep:${config.deployment}`];
      if (wait) {
        await em.execute('select pg_advisory_xact_lock(hashtext(?))', key);
      } else {
        const [row] = await em.execute<{ locked: boolean }[]>(
          'select pg_try_advisory_xact_lock(hashtext(?)) as locked',
          key,
        );
        if (row?.locked !== true) return undefined;
      }
      const startedAt = new Date();
      const report = await inSpan('reaper.sweep', {}, () => sweep(deps)).catch((error: unknown) => {
        // Often a ConnectError from another service, which the interceptor passes on unlogged.
        logger.error({ err: error }, 'sweep failed');
        metrics.failed();
        throw error;
      });
      metrics.swept(report);
      logger.info({ ...report, ms: Date.now() - startedAt.getTime() }, 'swept');
      return em.create(SweepEntity, {
        id: randomUUID(),
        instanceId: config.instanceId,
        startedAt,
        finishedAt: new Date(),
        report,
      });
    });

  const toReport = (row: SweepEntity): admin.SweepReport =>
    create(admin.SweepReportSchema, {
      ...row.report,
      startTime: timestampFromDate(row.startedAt),
      finishTime: timestampFromDate(row.finishedAt),
    });

  const implementation: ServiceImpl<typeof admin.ReaperService> = {
    getStatus: async () => {
      const [last] = await db
        .em()
        .find(SweepEntity, {}, { orderBy: { startedAt: 'desc' }, limit: 1 });
      return create(admin.GetStatusResponseSchema, {
        instanceId: config.instanceId,
        startTime: timestampFromDate(startTime),
        lastSweep: last === undefined ? undefined : toReport(last),
        eventsConsumed: Object.fromEntries(consumed),
      });
    },
    sweep: async () => {
      // Waits for a sweep another replica is running, then runs its own.
      const row = await sweepOnce(true);
      return create(admin.SweepResponseSchema, {
        report: row === undefined ? undefined : toReport(row),
      });
    },
  };
  return {
    name: 'reaper',
    routes: (router) => router.service(admin.ReaperService, implementation),
    healthChecks: [{ name: 'postgres:reaper', check: () => db.ping() }],
    start: async () => {
      consumer = await bus.consume({
        durable: 'reaper',
        types: Object.keys(eventTypes) as EventType[],
        handle: (event) => {
          consumed.set(event.type, (consumed.get(event.type) ?? 0n) + 1n);
          logger.debug({ type: event.type, eventId: event.message.eventId }, 'event');
        },
      });
      interval = setInterval(() => {
        sweepOnce(false).catch(() => {
          // Logged by sweepOnce; the next interval tries again.
        });
      }, config.reaper.sweepIntervalMs);
      interval.unref();
    },
    drain: async (graceMs) => {
      clearInterval(interval);
      // A sweep is not cut short: it is waited for, whatever the grace.
      await work.drain(graceMs, abortReason('ServiceStopping', 'the reaper is stopping'));
    },
    stop: async () => {
      clearInterval(interval);
      await consumer?.stop();
      await db.close();
    },
  };
}
