import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import type { ExecutionLimits } from '@assist-tee/config';
import { type ColdStartReasonName, ExecutionEntity } from '@assist-tee/db';
import { eventHeader } from '@assist-tee/events';
import type { OutboxEvent } from '@assist-tee/outbox';
import {
  type Environment,
  ExecutionFinishedSchema,
  type ExecutionStarted,
  ExecutionStartedSchema,
} from '@assist-tee/proto';
import { abortReason, isUnreachable, retryWhileUnreachable } from '@assist-tee/server';
import { activeTraceId, inSpan, setActiveSpanAttributes } from '@assist-tee/tracing';
import type { CoreDeps } from './deps.js';
import { isEnvironmentDeleted } from './environment-deleted.js';
import { toExecutionMessage } from './execution-message.js';
import type { RunOutcome } from './runner-sandbox.js';

/** How long an outcome waits for the database to come back before the call gives up. */
const RECORD_RETRY_MS = 30_000;
/** A run still going after this long is recorded as RUNNING; a shorter one only at its end. */
const RUNNING_RECORD_DELAY_MS = 100;

export interface RecordedRunSpec {
  environment: Environment;
  /** Must succeed before anything is recorded (the environment's lookup); a failure stops the run. */
  confirmed: Promise<unknown>;
  startedAt: number;
  limits: ExecutionLimits;
  warm: boolean;
  coldStartReason: ColdStartReasonName | null;
  sessionId: string | null;
  /** Runs the call; a rejection is recorded as SANDBOX_ERROR "the sandbox could not be started". */
  run(executionId: string, signal: AbortSignal): Promise<RunOutcome>;
  signal: AbortSignal;
}

/**
 * Runs one call as an execution: a run that lasts gets its RUNNING row (and execution.started)
 * while it runs, so that a crash can be recovered; a short one is written once, with its
 * outcome, in one transaction. Before either write nothing of the execution exists, not even for
 * a crash to leave behind.
 */
export async function recordedRun(
  deps: CoreDeps,
  spec: RecordedRunSpec,
): Promise<{ row: ExecutionEntity; outcome: RunOutcome }> {
  const { environment } = spec;
  const row: ExecutionEntity = {
    id: randomUUID(),
    environmentId: environment.id,
    tenantId: environment.tenantId,
    sessionId: spec.sessionId,
    status: 'RUNNING',
    result: null,
    error: null,
    logs: [],
    outputTruncated: false,
    exitCode: null,
    durationMs: null,
    limits: spec.limits,
    warm: spec.warm,
    coldStartReason: spec.coldStartReason,
    instanceId: deps.config.instanceId,
    traceId: activeTraceId() ?? null,
    createdAt: new Date(spec.startedAt),
    finishedAt: null,
  };
  // The trace names the execution: found by its id in a tracing backend.
  setActiveSpanAttributes({ 'assist_tee.execution.id': row.id });
  const started = create(ExecutionStartedSchema, {
    ...eventHeader(),
    executionId: row.id,
    environmentId: environment.id,
    tenantId: environment.tenantId,
  });
  // A failed confirmation or RUNNING write stops the run and fails the call.
  const recording = new AbortController();
  spec.confirmed.catch((error: unknown) => recording.abort(error));
  let recordedRunning: Promise<void> | undefined;
  const recordRunning = setTimeout(() => {
    recordedRunning = spec.confirmed
      .then(() => {
        const em = deps.db.em();
        em.create(ExecutionEntity, { ...row });
        return deps.outbox.flushWith(em, 'execution.started', started);
      })
      .catch((error: unknown) => recording.abort(error));
  }, RUNNING_RECORD_DELAY_MS);
  let outcome: RunOutcome;
  try {
    outcome = await spec.run(row.id, AbortSignal.any([spec.signal, recording.signal]));
  } catch (error) {
    deps.logger.error({ err: error, executionId: row.id }, 'starting the sandbox failed');
    outcome = {
      status: 'SANDBOX_ERROR',
      result: null,
      error: { name: 'SandboxFailed', message: 'the sandbox could not be started', stack: '' },
      logs: [],
      outputTruncated: false,
      exitCode: -1,
      sandboxEnded: true,
    };
  }
  clearTimeout(recordRunning);
  await Promise.allSettled([spec.confirmed, recordedRunning]);
  if (recording.signal.aborted) throw recording.signal.reason;
  if (await deletedUnderIt(deps, environment.id, outcome)) {
    const { name, message } = environmentDeleted();
    outcome = {
      ...outcome,
      status: 'SANDBOX_ERROR',
      result: null,
      error: { name, message, stack: '' },
    };
  }
  const recorded = await recordOutcome(deps, row, outcome, spec.startedAt, {
    started,
    recordedRunning: recordedRunning !== undefined,
  });
  deps.logger.info(
    { executionId: recorded.id, status: recorded.status, durationMs: recorded.durationMs },
    'execution finished',
  );
  deps.metrics.finished(environment, recorded.status, spec.warm, recorded.durationMs ?? 0);
  return { row: recorded, outcome };
}

/**
 * Writes the outcome and its execution.finished in one transaction, and returns the row as
 * stored. A short run's row is inserted with its outcome and both its events (ExecutionWriter).
 * A row recorded RUNNING is finished only while it still is: the stuck-execution sweep may have
 * finished it meanwhile, and then that outcome stands, with its own execution.finished as the
 * only one.
 */
async function recordOutcome(
  deps: CoreDeps,
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
  const finishedEvent: OutboxEvent = { type: 'execution.finished', message: finished };
  const events: OutboxEvent[] = [{ type: 'execution.started', message: started }, finishedEvent];
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
  const written = await inSpan('execution.record', {}, async () => {
    try {
      if (recordedRunning) return await finishRunning();
      await deps.writer.write(row, events);
      return true;
    } catch (error) {
      if (!isUnreachable(error)) throw error;
      deps.logger.warn({ executionId: row.id, err: error }, 'the outcome waits for the database');
      // The database went away while the handler ran: keep the outcome for when it is back,
      // each attempt in a fresh unit of work (a failed flush leaves the last one unusable).
      return retryWhileUnreachable(async () => {
        if (recordedRunning) return finishRunning();
        // A short run: nothing of it is stored unless the failed attempt did commit after all.
        if ((await deps.db.em().count(ExecutionEntity, { id: row.id })) > 0) return true;
        await deps.writer.write(row, events);
        return true;
      }, RECORD_RETRY_MS);
    }
  });
  if (written) {
    if (recordedRunning) deps.outbox.publishCommitted([finishedEvent]);
    return row;
  }
  deps.logger.warn(
    { executionId: row.id, status: outcome.status },
    'the execution was finished elsewhere meanwhile (the stuck-execution sweep); its outcome stands',
  );
  return deps.db.em().findOneOrFail(ExecutionEntity, row.id);
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
  deps: CoreDeps,
  environmentId: string,
  outcome: RunOutcome,
): Promise<boolean> {
  const unexplained = ['ProcessExited', 'SandboxFailed'].includes(outcome.error?.name ?? '');
  return unexplained && isEnvironmentDeleted(deps.environments, environmentId);
}
