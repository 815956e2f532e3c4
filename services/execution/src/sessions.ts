import { randomUUID } from 'node:crypto';
import { sql } from '@mikro-orm/core';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { ExecutionLimits } from '@assist-tee/config';
import { SessionEntity, type SessionEndReasonName } from '@assist-tee/db';
import { eventHeader } from '@assist-tee/events';
import {
  type CreateSessionRequest,
  type Environment,
  type Execution,
  type Limits,
  SessionCreatedSchema,
  SessionEndedSchema,
} from '@assist-tee/proto';
import {
  abortReason,
  failedPrecondition,
  invalidArgument,
  isUuid,
  notFound,
  quotaExceeded,
  validateLabels,
} from '@assist-tee/server';
import type { CoreDeps } from './deps.js';
import {
  asExecution,
  callWork,
  checkRequest,
  type ExecuteInput,
  readyEnvironment,
} from './execute.js';
import { toExecutionMessage } from './execution-message.js';
import { launchSandbox, runtimeOf } from './launch.js';
import { resolveLimits } from './limits.js';
import { recordedRun } from './recorded-run.js';
import type { RunStatus } from './run-outcome.js';
import type { LogLine } from './runner-protocol.js';
import type { RunnerSandbox } from './runner-sandbox.js';
import { toSessionMessage } from './session-message.js';

/** A session's call counters reach the database at most this often (and when it ends). */
const TOUCH_INTERVAL_MS = 10_000;
/** Past its idle timeout or lifetime by this much, an ACTIVE session has lost its instance. */
const LOST_GRACE_MS = 60_000;

/** How a call that ended its session's sandbox ends the session. */
const END_REASON_OF: Partial<Record<RunStatus, SessionEndReasonName>> = {
  TIMEOUT: 'CALL_TIMEOUT',
  OOM: 'OOM',
  OUTPUT_LIMIT: 'OUTPUT_LIMIT',
  PROCESS_LIMIT: 'PROCESS_LIMIT',
};

/** A session whose sandbox this instance holds. */
interface LiveSession {
  /** The row as stored, with the counters kept here since the last touch. */
  row: SessionEntity;
  environment: Environment;
  sandbox: RunnerSandbox;
  /** The calls so far, chained in arrival order: each waits for the one before. */
  queue: Promise<unknown>;
  /** Calls waiting or running. */
  calls: number;
  running: boolean;
  idleTimer?: NodeJS.Timeout;
  lifetimeTimer: NodeJS.Timeout;
  /** Aborted when the session ends: stops its running call. */
  stop: AbortController;
  /** Set once the session ends: resolves with the ended row. */
  ending?: Promise<SessionEntity>;
  touchedAt: number;
}

/**
 * The sessions whose sandboxes this instance holds: each one sandbox (RunnerSandbox) that serves
 * its calls one at a time, in arrival order, until the session ends. Every way it ends goes
 * through end(): the reason is stored with session.ended, and the sandbox is removed.
 */
export class Sessions {
  private readonly live = new Map<string, LiveSession>();
  /** Sessions being created, per tenant: counted against the quota with the stored ones. */
  private readonly creating = new Map<string, number>();

  constructor(private readonly deps: CoreDeps) {}

  /** Starts a session for a READY environment and returns it ACTIVE. */
  async create(caller: string | undefined, request: CreateSessionRequest): Promise<SessionEntity> {
    const { config } = this.deps;
    const limits = resolveLimits(request.limits, config.execution);
    const idleTimeoutMs = withDefault(
      'idle_timeout_ms',
      request.idleTimeoutMs,
      config.sessions.defaults.idleTimeoutMs,
      config.sessions.maxima.idleTimeoutMs,
    );
    const maxLifetimeMs = withDefault(
      'max_lifetime_ms',
      request.maxLifetimeMs,
      config.sessions.defaults.maxLifetimeMs,
      config.sessions.maxima.maxLifetimeMs,
    );
    validateLabels(request.labels);
    const environment = await readyEnvironment(this.deps, caller, request.environmentId);
    runtimeOf(this.deps, environment);
    const tenantId = environment.tenantId;
    this.creating.set(tenantId, (this.creating.get(tenantId) ?? 0) + 1);
    try {
      await this.checkQuota(tenantId);
      return await this.start(environment, limits, {
        idleTimeoutMs,
        maxLifetimeMs,
        labels: request.labels,
      });
    } finally {
      const left = this.creating.get(tenantId)! - 1;
      if (left === 0) this.creating.delete(tenantId);
      else this.creating.set(tenantId, left);
    }
  }

  /** Runs a call (ExecuteRequest with session_id) in the session when its turn comes. */
  async execute(
    caller: string | undefined,
    input: ExecuteInput,
    onLog?: (line: LogLine) => void,
  ): Promise<Execution> {
    const arrivedAt = Date.now();
    const live = await this.find(caller, input.sessionId);
    const { row } = live;
    if (input.environmentId !== '' && input.environmentId !== row.environmentId) {
      throw invalidArgument(
        'environment_id',
        `is not the environment of session ${JSON.stringify(row.id)}; leave it empty`,
      );
    }
    const limits = callLimits(input.limits, row.limits, this.deps.config.execution);
    const work = await callWork(this.deps, input);
    checkRequest(this.deps, caller, live.environment, input);
    const { maxQueuedCalls } = this.deps.config.sessions;
    if (live.calls >= maxQueuedCalls) {
      throw quotaExceeded(
        'SESSION_QUEUE_FULL',
        `session ${JSON.stringify(row.id)} has ${live.calls} calls waiting or running, the most it takes (TEE_SESSION_MAX_QUEUED_CALLS)`,
        { sessionId: row.id, limit: maxQueuedCalls },
      );
    }
    live.calls++;
    // The session is busy only while its sandbox runs the call: the next call starts while
    // this one's outcome is being written.
    const turn = Promise.withResolvers<void>();
    const previous = live.queue;
    live.queue = turn.promise;
    try {
      await previous;
      return await this.call(live, caller, arrivedAt, limits, work, input.env, turn.resolve, onLog);
    } finally {
      turn.resolve();
      live.calls--;
    }
  }

  /** Ends the caller's session (REQUESTED); an ended one is returned as it is. */
  async endRequested(caller: string | undefined, id: string): Promise<SessionEntity> {
    const live = isUuid(id) ? this.live.get(id) : undefined;
    if (live !== undefined && owns(caller, live.row)) {
      return this.end(live, 'REQUESTED', 'ended by EndSession');
    }
    const row = await this.stored(caller, id);
    if (row.status === 'ACTIVE') throw elsewhere(row);
    return row;
  }

  /** The row with this instance's newer counters, when the session is live here. */
  current(row: SessionEntity): SessionEntity {
    return this.live.get(row.id)?.row ?? row;
  }

  /** Ends the sessions of a deleted environment (its sandboxes are being removed). */
  endForEnvironment(environmentId: string): number {
    let ended = 0;
    for (const live of this.live.values()) {
      if (live.row.environmentId !== environmentId || live.ending !== undefined) continue;
      void this.end(live, 'ENVIRONMENT_DELETED', 'its environment was deleted or expired');
      ended++;
    }
    return ended;
  }

  /**
   * At start: the sessions this instance held before it restarted are lost; their sandboxes are
   * removed.
   */
  async endOwnLost(): Promise<string[]> {
    const rows = await this.deps.db
      .em()
      .find(SessionEntity, { status: 'ACTIVE', instanceId: this.deps.config.instanceId });
    return this.endLost(rows, 'its instance restarted; the sandbox was removed');
  }

  /**
   * ACTIVE sessions of any instance that their instance should have ended already (past their
   * lifetime or idle timeout, plus a grace): that instance is gone.
   */
  async endStaleLost(): Promise<string[]> {
    const cutoff = new Date(Date.now() - LOST_GRACE_MS);
    const rows = await this.deps.db.em().find(SessionEntity, {
      status: 'ACTIVE',
      id: { $nin: [...this.live.keys()] },
      $or: [
        { expiresAt: { $lt: cutoff } },
        {
          [sql`coalesce(last_call_at, created_at) + idle_timeout_ms * interval '1 millisecond'`]: {
            $lt: cutoff,
          },
        },
      ],
    });
    return this.endLost(rows, 'its instance stopped answering; the sandbox was removed');
  }

  /** Containers of ACTIVE sessions, on every instance. */
  async sandboxes(): Promise<SessionEntity[]> {
    return this.deps.db.em().find(SessionEntity, { status: 'ACTIVE' });
  }

  /** At shutdown (after running calls were drained): every live session ends as LOST. */
  async close(): Promise<void> {
    await Promise.all(
      [...this.live.values()].map((live) =>
        this.end(live, 'LOST', 'its instance stopped; the sandbox was removed'),
      ),
    );
  }

  private async start(
    environment: Environment,
    limits: ExecutionLimits,
    settings: Pick<SessionEntity, 'idleTimeoutMs' | 'maxLifetimeMs' | 'labels'>,
  ): Promise<SessionEntity> {
    const { deps } = this;
    const id = randomUUID();
    const { defaults } = deps.config.execution;
    const fitsPool =
      limits.memoryMb === defaults.memoryMb && limits.cpuMillicores === defaults.cpuMillicores;
    let sandbox = (await deps.pool.take(environment, { defaultLimits: fitsPool })).sandbox;
    const warm = sandbox !== undefined;
    try {
      if (sandbox === undefined) {
        const memory = await deps.memory.admit(
          limits.memoryMb,
          `a session with limits.memory_mb ${limits.memoryMb}`,
        );
        sandbox = await launchSandbox(deps, environment, limits, { sessionId: id }, memory);
      }
      if (!(await sandbox.ready)) {
        throw failedPrecondition(
          'SESSION_NOT_STARTED',
          `the session's sandbox ended before environment ${JSON.stringify(environment.id)}'s main module loaded; Execute shows why`,
          { environmentId: environment.id },
        );
      }
      const now = new Date();
      const em = deps.db.em();
      const row = em.create(SessionEntity, {
        id,
        environmentId: environment.id,
        tenantId: environment.tenantId,
        status: 'ACTIVE',
        limits,
        ...settings,
        endReason: null,
        endMessage: null,
        endExecutionId: null,
        callCount: 0,
        warm,
        instanceId: deps.config.instanceId,
        containerId: sandbox.id,
        createdAt: now,
        lastCallAt: null,
        expiresAt: new Date(now.getTime() + settings.maxLifetimeMs),
        endedAt: null,
      });
      await deps.outbox.flushWith(
        em,
        'session.created',
        create(SessionCreatedSchema, { ...eventHeader(), session: toSessionMessage(row) }),
      );
      this.keep(row, environment, sandbox);
      deps.logger.info({ sessionId: id, environmentId: environment.id, warm }, 'session started');
      return row;
    } catch (error) {
      if (sandbox !== undefined) deps.pool.discard(sandbox);
      throw error;
    }
  }

  private keep(row: SessionEntity, environment: Environment, sandbox: RunnerSandbox): void {
    const live: LiveSession = {
      row,
      environment,
      sandbox,
      queue: Promise.resolve(),
      calls: 0,
      running: false,
      lifetimeTimer: setTimeout(
        () =>
          void this.end(
            live,
            'MAX_LIFETIME',
            `it reached its max_lifetime_ms of ${row.maxLifetimeMs}`,
          ),
        row.maxLifetimeMs,
      ),
      stop: new AbortController(),
      touchedAt: Date.now(),
    };
    this.live.set(row.id, live);
    this.armIdle(live);
    // A sandbox that dies between calls (a timer's process.exit, output past the cap, a kill
    // from outside) ends the session; one that dies in a call is that call's outcome.
    void sandbox.ended.then(() => {
      if (live.running || live.ending !== undefined) return;
      const output = sandbox.stopReason === 'output';
      void this.end(
        live,
        output ? 'OUTPUT_LIMIT' : 'CRASHED',
        output
          ? 'it wrote more output between calls than an execution may'
          : 'its runtime exited between calls',
      );
    });
  }

  private async call(
    live: LiveSession,
    caller: string | undefined,
    arrivedAt: number,
    limits: ExecutionLimits,
    work: Awaited<ReturnType<typeof callWork>>,
    env: Record<string, string>,
    turnOver: () => void,
    onLog?: (line: LogLine) => void,
  ): Promise<Execution> {
    if (live.ending !== undefined) throw endedError(await live.ending);
    const { row, environment, sandbox } = live;
    return asExecution(this.deps, caller, environment.id, async (signal) => {
      const { row: execution } = await recordedRun(this.deps, {
        environment,
        confirmed: Promise.resolve(),
        startedAt: arrivedAt,
        limits,
        warm: true,
        coldStartReason: null,
        sessionId: row.id,
        signal: AbortSignal.any([signal, live.stop.signal]),
        run: async (executionId, runSignal) => {
          clearTimeout(live.idleTimer);
          live.running = true;
          try {
            const outcome = await sandbox.run({
              work,
              env,
              context: { executionId, environmentId: environment.id, sessionId: row.id },
              timeoutMs: limits.timeoutMs,
              maxOutputBytes: limits.maxOutputBytes,
              onLog,
              signal: runSignal,
            });
            row.callCount++;
            row.lastCallAt = new Date();
            if (outcome.sandboxEnded) {
              // Before the next call's turn: it finds the session ended, and why.
              void this.end(
                live,
                END_REASON_OF[outcome.status] ?? 'CRASHED',
                `call ${executionId} ended with ${outcome.status}: ${outcome.error?.message ?? ''}`,
                executionId,
              );
            }
            return outcome;
          } finally {
            live.running = false;
            if (live.ending === undefined) this.armIdle(live);
            turnOver();
          }
        },
      });
      if (live.ending === undefined) this.touch(live);
      return toExecutionMessage(execution);
    });
  }

  private armIdle(live: LiveSession): void {
    clearTimeout(live.idleTimer);
    live.idleTimer = setTimeout(
      () =>
        void this.end(
          live,
          'IDLE_TIMEOUT',
          `no call for its idle_timeout_ms of ${live.row.idleTimeoutMs}`,
        ),
      live.row.idleTimeoutMs,
    );
  }

  /** Writes the call counters now and then, so that the lost-session sweep sees it is in use. */
  private touch(live: LiveSession): void {
    const now = Date.now();
    if (now - live.touchedAt < TOUCH_INTERVAL_MS) return;
    live.touchedAt = now;
    const { id, callCount, lastCallAt } = live.row;
    this.deps.db
      .em()
      .nativeUpdate(SessionEntity, { id, status: 'ACTIVE' }, { callCount, lastCallAt })
      .catch((error: unknown) =>
        this.deps.logger.warn({ err: error, sessionId: id }, 'recording session use failed'),
      );
  }

  /**
   * Ends a live session once, whatever asks first: stops its running call, removes its sandbox
   * and records the end with its session.ended. Calls waiting for it get FailedPrecondition.
   */
  private end(
    live: LiveSession,
    reason: SessionEndReasonName,
    message: string,
    endExecutionId: string | null = null,
  ): Promise<SessionEntity> {
    live.ending ??= (async () => {
      clearTimeout(live.idleTimer);
      clearTimeout(live.lifetimeTimer);
      live.stop.abort(
        abortReason('SessionEnded', `the session ended while this call ran: ${message}`),
      );
      this.deps.pool.discard(live.sandbox);
      Object.assign(live.row, {
        status: 'ENDED',
        endReason: reason,
        endMessage: message,
        endExecutionId,
        endedAt: new Date(),
      });
      await this.recordEnd(live.row);
      this.deps.logger.info({ sessionId: live.row.id, reason }, 'session ended');
      return live.row;
    })().finally(() => this.live.delete(live.row.id));
    return live.ending;
  }

  /** The end and its session.ended in one transaction, if the session is still ACTIVE. */
  private async recordEnd(row: SessionEntity): Promise<boolean> {
    const event = create(SessionEndedSchema, { ...eventHeader(), session: toSessionMessage(row) });
    const ended = await this.deps.db.em().transactional(async (tx) => {
      const updated = await tx.nativeUpdate(
        SessionEntity,
        { id: row.id, status: 'ACTIVE' },
        {
          status: 'ENDED',
          endReason: row.endReason,
          endMessage: row.endMessage,
          endExecutionId: row.endExecutionId,
          endedAt: row.endedAt,
          callCount: row.callCount,
          lastCallAt: row.lastCallAt,
        },
      );
      if (updated > 0) this.deps.outbox.add(tx, 'session.ended', event);
      return updated > 0;
    });
    if (ended) this.deps.outbox.publishCommitted([{ type: 'session.ended', message: event }]);
    return ended;
  }

  private async endLost(rows: SessionEntity[], message: string): Promise<string[]> {
    const ended: string[] = [];
    for (const row of rows) {
      Object.assign(row, {
        status: 'ENDED',
        endReason: 'LOST',
        endMessage: message,
        endedAt: new Date(),
      });
      if (!(await this.recordEnd(row))) continue;
      ended.push(row.id);
      if (row.instanceId === this.deps.config.instanceId && row.containerId !== null) {
        await this.deps.sandbox
          .removeContainer(row.containerId)
          .catch((error: unknown) =>
            this.deps.logger.warn(
              { err: error, sessionId: row.id },
              'removing a lost session sandbox failed',
            ),
          );
      }
    }
    if (ended.length > 0) this.deps.logger.warn({ sessions: ended, message }, 'sessions lost');
    return ended;
  }

  /** The live session of a call; the error a caller should see for any other. */
  private async find(caller: string | undefined, id: string): Promise<LiveSession> {
    const live = isUuid(id) ? this.live.get(id) : undefined;
    if (live !== undefined && owns(caller, live.row)) {
      if (live.ending !== undefined) throw endedError(await live.ending);
      return live;
    }
    const row = await this.stored(caller, id);
    throw row.status === 'ENDED' ? endedError(row) : elsewhere(row);
  }

  private async stored(caller: string | undefined, id: string): Promise<SessionEntity> {
    const row = isUuid(id)
      ? await this.deps.db.em().findOne(SessionEntity, {
          id,
          ...(caller === undefined ? {} : { tenantId: caller }),
        })
      : null;
    if (row === null) throw notFound('session', id);
    return row;
  }

  private async checkQuota(tenantId: string): Promise<void> {
    const limit = this.deps.config.quotas.openSessions;
    const open =
      (await this.deps.db.em().count(SessionEntity, { tenantId, status: 'ACTIVE' })) +
      (this.creating.get(tenantId) ?? 0) -
      1;
    if (open >= limit) {
      throw quotaExceeded(
        'TENANT_QUOTA_OPEN_SESSIONS',
        `tenant ${JSON.stringify(tenantId)} has ${open} open sessions, its quota (TEE_QUOTA_OPEN_SESSIONS); end one first`,
        { tenantId, limit },
      );
    }
  }
}

const owns = (caller: string | undefined, row: SessionEntity) =>
  caller === undefined || row.tenantId === caller;

/** What a call to an ended session answers: why it ended. */
function endedError(row: SessionEntity): ConnectError {
  return failedPrecondition(
    'SESSION_ENDED',
    `session ${JSON.stringify(row.id)} has ended (${row.endReason}): ${row.endMessage ?? ''}`,
    { sessionId: row.id, endReason: row.endReason ?? '' },
  );
}

/** An ACTIVE session that another instance holds: that instance serves it. */
function elsewhere(row: SessionEntity): ConnectError {
  return new ConnectError(
    `session ${JSON.stringify(row.id)} is held by instance ${JSON.stringify(row.instanceId)}, not this one`,
    Code.Unavailable,
  );
}

/** A duration field: zero is the default; above the maximum is InvalidArgument. */
function withDefault(field: string, value: number, fallback: number, maximum: number): number {
  if (value === 0) return fallback;
  if (value > maximum) throw invalidArgument(field, `${value} is above the maximum of ${maximum}`);
  return value;
}

/**
 * A session call's limits: the session's, with this call's own timeout and output cap. Its
 * sandbox's memory and CPU are the session's for its life.
 */
function callLimits(
  requested: Limits | undefined,
  session: ExecutionLimits,
  config: CoreDeps['config']['execution'],
): ExecutionLimits {
  for (const [key, field] of [
    ['memoryMb', 'limits.memory_mb'],
    ['cpuMillicores', 'limits.cpu_millicores'],
  ] as const) {
    const value = requested?.[key] ?? 0;
    if (value !== 0 && value !== session[key]) {
      throw invalidArgument(
        field,
        `must be 0 or the session's ${session[key]}: a session's sandbox keeps its size`,
      );
    }
  }
  return resolveLimits(requested, { ...config, defaults: session });
}
