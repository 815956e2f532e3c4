import { randomUUID } from 'node:crypto';
import { create, type JsonValue } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { wrap } from '@mikro-orm/core';
import { type ColdStartReasonName, ExecutionEntity } from '@assist-tee/db';
import { eventHeader } from '@assist-tee/events';
import {
  type Environment,
  EnvironmentStatus,
  EnvironmentStatusSchema,
  type ExecuteRequest,
  type Execution,
  ExecutionFinishedSchema,
  type ExecutionStarted,
  ExecutionStartedSchema,
} from '@assist-tee/proto';
import {
  abortReason,
  failedPrecondition,
  invalidArgument,
  isUnreachable,
  notFound,
  retryWhileUnreachable,
  withinLimits,
} from '@assist-tee/server';
import type { ExecutionDeps } from './deps.js';
import { jsonFromValue, toExecutionMessage } from './execution-message.js';
import { resolveLimits } from './limits.js';
import type { RunOutcome } from './handler-sandbox.js';
import { isEnvironmentDeleted } from './environment-deleted.js';
import { launchSandbox, runtimeOf } from './launch.js';
import type { LogLine } from './runner-protocol.js';

/** How long an outcome waits for the database to come back before the call gives up. */
const RECORD_RETRY_MS = 30_000;
/** A run still going after this long is recorded as RUNNING; a shorter one only at its end. */
const RUNNING_RECORD_DELAY_MS = 100;

/** The fields Execute and ExecuteStream share. */
export type ExecuteInput = Pick<ExecuteRequest, 'environmentId' | 'data' | 'env' | 'limits'>;

/**
 * Runs one execution end to end: validates, runs the handler in a fresh sandbox (recording it
 * RUNNING if it lasts), records the outcome, and publishes execution.started /
 * execution.finished. It is work in flight: a stopping service refuses it, and waits for it or
 * cuts it short.
 */
export async function execute(
  deps: ExecutionDeps,
  caller: string | undefined,
  input: ExecuteInput,
  onLog?: (line: LogLine) => void,
): Promise<Execution> {
  // The services' key (caller undefined) is not a tenant and has no quota of its own; it
  // counts towards the instance's limit like every tenant.
  return withinLimits(
    [
      ...(caller === undefined ? [] : [() => deps.executionQuota.acquire(caller)]),
      () => deps.runningExecutions.acquire(),
    ],
    () =>
      deps.work.run(
        (signal) => executeNow(deps, caller, input, signal, onLog),
        input.environmentId,
      ),
  );
}

async function executeNow(
  deps: ExecutionDeps,
  caller: string | undefined,
  input: ExecuteInput,
  signal: AbortSignal,
  onLog?: (line: LogLine) => void,
): Promise<Execution> {
  const startedAt = Date.now();
  for (const warning of deps.warnings) {
    deps.logger.warn({ environmentId: input.environmentId }, warning);
  }
  const limits = resolveLimits(input.limits, deps.config.execution);
  const data = eventData(input.data);
  const eventBytes = Buffer.byteLength(JSON.stringify({ data, env: input.env }));
  if (eventBytes > deps.config.execution.maxEventBytes) {
    throw invalidArgument(
      'data',
      `the event is ${eventBytes} bytes; the maximum is ${deps.config.execution.maxEventBytes}`,
    );
  }
  // A warm sandbox was started with the default limits: other limits need a cold one.
  const { defaults } = deps.config.execution;
  const fitsPool =
    limits.memoryMb === defaults.memoryMb && limits.cpuMillicores === defaults.cpuMillicores;
  // Code and permissions never change after setup: the pool's copy of the environment can
  // check the request and start a warm run while the lookup confirms that the environment is
  // still READY. Nothing is recorded before it has, and a failed lookup stops the run and fails
  // the call.
  const lookup = readyEnvironment(deps, caller, input.environmentId);
  const known = fitsPool ? deps.pool.environment(input.environmentId) : undefined;
  const environment = known ?? (await lookup);
  try {
    checkRequest(deps, caller, environment, input);
  } catch (error) {
    await lookup; // a deleted environment is NotFound, whatever the request
    throw error;
  }
  let sandbox = known === undefined ? undefined : deps.pool.takeReady(known.id);
  let coldStartReason: ColdStartReasonName | null = null;
  if (sandbox === undefined) {
    // A cold start (or a sandbox still starting) only for an environment known to be READY.
    await lookup;
    const take = await deps.pool.take(environment, { defaultLimits: fitsPool });
    sandbox = take.sandbox;
    coldStartReason = take.coldStartReason ?? null;
  }
  // A warm sandbox holds its memory already; a cold one is refused at once if running work
  // holds too much of the instance's sandbox memory to fit it (idle warm sandboxes give way).
  const coldMemory =
    sandbox === undefined
      ? await deps.memory.admit(
          limits.memoryMb,
          `an execution with limits.memory_mb ${limits.memoryMb}`,
        )
      : undefined;
  const em = deps.db.em();
  const row = em.create(ExecutionEntity, {
    id: randomUUID(),
    environmentId: environment.id,
    tenantId: environment.tenantId,
    status: 'RUNNING',
    result: null,
    error: null,
    logs: [],
    outputTruncated: false,
    exitCode: null,
    durationMs: null,
    limits,
    warm: sandbox !== undefined,
    coldStartReason,
    instanceId: deps.config.instanceId,
    createdAt: new Date(startedAt),
    finishedAt: null,
  });
  const started = create(ExecutionStartedSchema, {
    ...eventHeader(),
    executionId: row.id,
    environmentId: environment.id,
    tenantId: environment.tenantId,
  });
  // A run that lasts gets its RUNNING row (and execution.started) while it runs, so that a
  // crash can be recovered; a short one is written once, with its outcome, in one transaction.
  // Before either write nothing of the execution exists, not even for a crash to leave behind.
  // A failed lookup or RUNNING write stops the run and fails the call.
  const recording = new AbortController();
  lookup.catch((error: unknown) => recording.abort(error));
  let recordedRunning: Promise<void> | undefined;
  const recordRunning = setTimeout(() => {
    recordedRunning = lookup
      .then(() => deps.outbox.flushWith(em, 'execution.started', started))
      .catch((error: unknown) => recording.abort(error));
  }, RUNNING_RECORD_DELAY_MS);
  let outcome: RunOutcome;
  let recorded: ExecutionEntity;
  try {
    try {
      sandbox ??= await launchSandbox(
        deps,
        environment,
        limits,
        { executionId: row.id },
        coldMemory!,
      );
      outcome = await sandbox.run({
        event: {
          data,
          env: input.env,
          context: {
            executionId: row.id,
            environmentId: environment.id,
            timeoutMs: limits.timeoutMs,
          },
        },
        timeoutMs: limits.timeoutMs,
        maxOutputBytes: limits.maxOutputBytes,
        onLog,
        signal: AbortSignal.any([signal, recording.signal]),
      });
    } catch (error) {
      deps.logger.error({ err: error, executionId: row.id }, 'starting the sandbox failed');
      outcome = {
        status: 'SANDBOX_ERROR',
        result: null,
        error: { name: 'SandboxFailed', message: 'the sandbox could not be started', stack: '' },
        logs: [],
        outputTruncated: false,
        exitCode: -1,
      };
    }
    clearTimeout(recordRunning);
    await Promise.allSettled([lookup, recordedRunning]);
    if (recording.signal.aborted) throw recording.signal.reason;
    if (recordedRunning === undefined) deps.outbox.add(em, 'execution.started', started);
    if (await deletedUnderIt(deps, environment.id, outcome)) {
      const { name, message } = environmentDeleted();
      outcome = {
        ...outcome,
        status: 'SANDBOX_ERROR',
        result: null,
        error: { name, message, stack: '' },
      };
    }
    recorded = await recordOutcome(deps, em, row, outcome, startedAt, {
      started,
      recordedRunning: recordedRunning !== undefined,
    });
  } finally {
    // Removal, and the start that refills the pool, come after the outcome is written: on two
    // cores they would slow that write down. The pool tracks the removal; shutdown waits for it.
    if (sandbox !== undefined) deps.pool.discard(sandbox);
  }
  deps.logger.info(
    { executionId: recorded.id, status: recorded.status, durationMs: recorded.durationMs },
    'execution finished',
  );
  return toExecutionMessage(recorded);
}

/**
 * Writes the outcome and its execution.finished in one transaction, and returns the row as
 * stored. A short run's row is inserted with its outcome. A row recorded RUNNING is finished
 * only while it still is: the stuck-execution sweep may have finished it meanwhile, and then
 * that outcome stands, with its own execution.finished as the only one.
 */
async function recordOutcome(
  deps: ExecutionDeps,
  em: ReturnType<ExecutionDeps['db']['em']>,
  row: ExecutionEntity,
  outcome: RunOutcome,
  startedAt: number,
  { started, recordedRunning }: { started: ExecutionStarted; recordedRunning: boolean },
): Promise<ExecutionEntity> {
  const finishedAt = new Date();
  const outcomeFields = {
    status: outcome.status,
    result: outcome.result,
    error: outcome.error,
    logs: outcome.logs,
    outputTruncated: outcome.outputTruncated,
    exitCode: outcome.exitCode,
    durationMs: finishedAt.getTime() - startedAt,
    finishedAt,
  };
  Object.assign(row, outcomeFields);
  const finished = create(ExecutionFinishedSchema, {
    ...eventHeader(),
    execution: toExecutionMessage(row, { brief: true }),
  });
  // In a fresh unit of work: `em` holds the row with the outcome already assigned, and a
  // flush of it would write that whatever the row's status.
  const finishRunning = () =>
    deps.db.em().transactional(async (tx) => {
      const updated = await tx.nativeUpdate(
        ExecutionEntity,
        { id: row.id, status: 'RUNNING' },
        outcomeFields,
      );
      if (updated > 0) deps.outbox.add(tx, 'execution.finished', finished);
      return updated > 0;
    });
  let written: boolean;
  try {
    if (recordedRunning) {
      written = await finishRunning();
    } else {
      await deps.outbox.flushWith(em, 'execution.finished', finished);
      written = true;
    }
  } catch (error) {
    if (!isUnreachable(error)) throw error;
    deps.logger.warn({ executionId: row.id, err: error }, 'the outcome waits for the database');
    // The database went away while the handler ran: keep the outcome for when it is back,
    // each attempt in a fresh unit of work (a failed flush leaves the last one unusable).
    written = await retryWhileUnreachable(async () => {
      if (recordedRunning) return finishRunning();
      // A short run: nothing of it is stored unless the failed attempt did commit after all.
      const fresh = deps.db.em();
      if ((await fresh.count(ExecutionEntity, { id: row.id })) > 0) return true;
      fresh.create(ExecutionEntity, wrap(row).toPOJO());
      deps.outbox.add(fresh, 'execution.started', started);
      await deps.outbox.flushWith(fresh, 'execution.finished', finished);
      return true;
    }, RECORD_RETRY_MS);
  }
  if (written) {
    if (recordedRunning) deps.outbox.publishPending();
    return row;
  }
  deps.logger.warn(
    { executionId: row.id, status: outcome.status },
    'the execution was finished elsewhere meanwhile (the stuck-execution sweep); its outcome stands',
  );
  return deps.db.em().findOneOrFail(ExecutionEntity, row.id);
}

/** A Value can arrive without a kind (proto3 allows it on the wire); JSON has no such value. */
function eventData(value: ExecuteInput['data']): JsonValue {
  try {
    return jsonFromValue(value);
  } catch (error) {
    throw invalidArgument('data', `is not a JSON value: ${(error as Error).message}`);
  }
}

/** Why an execution ended early when its environment was deleted under it. */
export const environmentDeleted = (): Error =>
  abortReason(
    'EnvironmentDeleted',
    'the environment was deleted while this execution ran; its sandbox was removed',
  );

/**
 * Whether the sandbox died because its environment was deleted meanwhile (DeleteEnvironment
 * removes the sandboxes running on it). Only a sandbox that died without a reason of its own
 * is looked into, so ordinary outcomes cost no extra call.
 */
async function deletedUnderIt(
  deps: ExecutionDeps,
  environmentId: string,
  outcome: RunOutcome,
): Promise<boolean> {
  const unexplained = ['ProcessExited', 'SandboxFailed'].includes(outcome.error?.name ?? '');
  return unexplained && isEnvironmentDeleted(deps.environments, environmentId);
}

/**
 * The runtime exists here, and every env var is allowed and can be set: checked before anything
 * is recorded.
 */
function checkRequest(
  deps: ExecutionDeps,
  caller: string | undefined,
  environment: Environment,
  input: ExecuteInput,
): void {
  requireOwner(caller, environment, input.environmentId);
  runtimeOf(deps, environment);
  const allowed = new Set(environment.permissions?.allowEnv ?? []);
  for (const [name, value] of Object.entries(input.env)) {
    const field = `env[${JSON.stringify(name)}]`;
    if (!allowed.has(name)) {
      throw invalidArgument(field, "is not in the environment's permissions.allow_env");
    }
    if (value.includes('\u0000')) {
      throw invalidArgument(field, 'must not contain U+0000: an environment variable cannot');
    }
  }
}

/** Another tenant's environment is one that does not exist, whatever its status. */
function requireOwner(caller: string | undefined, environment: Environment, id: string): void {
  if (caller !== undefined && environment.tenantId !== caller) throw notFound('environment', id);
}

/** Looks the environment up with the services' key: its owner is checked before its status. */
async function readyEnvironment(
  deps: ExecutionDeps,
  caller: string | undefined,
  id: string,
): Promise<Environment> {
  if (id === '') throw invalidArgument('environment_id', 'is required');
  let environment: Environment | undefined;
  try {
    environment = (await deps.environments.getEnvironment({ id })).environment;
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.NotFound) {
      throw notFound('environment', id);
    }
    throw error;
  }
  if (environment === undefined || environment.status === EnvironmentStatus.DELETED) {
    throw notFound('environment', id);
  }
  requireOwner(caller, environment, id);
  if (environment.status !== EnvironmentStatus.READY) {
    // The metadata names the status as the JSON form does (ENVIRONMENT_STATUS_FAILED).
    throw failedPrecondition(
      'ENVIRONMENT_NOT_READY',
      `environment ${JSON.stringify(id)} is ${EnvironmentStatus[environment.status]}, not READY`,
      {
        environmentId: id,
        status: EnvironmentStatusSchema.value[environment.status]?.name ?? environment.status,
      },
    );
  }
  return environment;
}
