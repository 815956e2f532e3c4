import { create } from '@bufbuild/protobuf';
import { ExecutionEntity } from '@assist-tee/db';
import { eventHeader } from '@assist-tee/events';
import { ExecutionFinishedSchema } from '@assist-tee/proto';
import type { ExecutionDeps } from './deps.js';
import { toExecutionMessage } from './execution-message.js';

/** Past its deadline by this much, a RUNNING execution has lost its service. */
const STUCK_GRACE_MS = 30_000;

type RecoveryDeps = Pick<ExecutionDeps, 'config' | 'db' | 'logger' | 'outbox' | 'sandbox'>;

/**
 * Finishes executions whose service died under them (a crash, a SIGKILL, a lost host) as
 * SANDBOX_ERROR, publishes their execution.finished and removes their containers:
 * - `own`: this instance's RUNNING rows, at start. A restarted instance (same TEE_INSTANCE_ID)
 *   ran them, so nothing runs them any more.
 * - `stuck`: any instance's RUNNING rows past their deadline (timeout + startup) plus a grace.
 * Replicas may do this at the same time: each row is finished by one conditional update.
 */
export async function finishAbandonedExecutions(
  deps: RecoveryDeps,
  which: 'own' | 'stuck',
): Promise<string[]> {
  const running = await deps.db.em().find(ExecutionEntity, {
    status: 'RUNNING',
    ...(which === 'own' ? { instanceId: deps.config.instanceId } : {}),
  });
  const now = Date.now();
  const abandoned = running.filter(
    (row) =>
      which === 'own' ||
      row.createdAt.getTime() +
        row.limits.timeoutMs +
        deps.config.execution.startupTimeoutMs +
        STUCK_GRACE_MS <
        now,
  );
  const finished: string[] = [];
  for (const row of abandoned) {
    if (await finishOne(deps, row.id, which)) finished.push(row.id);
    const containers = await deps.sandbox.listContainers({ executionId: row.id });
    await Promise.all(containers.map((container) => deps.sandbox.removeContainer(container.id)));
  }
  if (which === 'own') {
    // At start, every sandbox of this instance is a leftover, and some have no RUNNING row to
    // be found by: warm ones carry no execution id, and a short run is recorded only at its end.
    const leftovers = await deps.sandbox.listContainers({
      owner: 'execution',
      instanceId: deps.config.instanceId,
    });
    await Promise.all(leftovers.map((container) => deps.sandbox.removeContainer(container.id)));
  }
  if (finished.length > 0) {
    deps.outbox.publishPending();
    deps.logger.warn({ executions: finished, which }, 'finished abandoned executions');
  }
  return finished;
}

async function finishOne(deps: RecoveryDeps, id: string, which: 'own' | 'stuck') {
  const message =
    which === 'own'
      ? 'the execution service stopped while this execution ran (a crash or a kill); its sandbox was removed'
      : 'this execution ran past its deadline without an outcome (its service was lost); its sandbox was removed';
  return deps.db.em().transactional(async (em) => {
    const finishedAt = new Date();
    // Conditional: a replica, or the execution itself, may have finished it meanwhile.
    const updated = await em.nativeUpdate(
      ExecutionEntity,
      { id, status: 'RUNNING' },
      {
        status: 'SANDBOX_ERROR',
        error: { name: 'SandboxLost', message, stack: '' },
        exitCode: -1,
        finishedAt,
      },
    );
    if (updated === 0) return false;
    const row = await em.findOneOrFail(ExecutionEntity, { id });
    row.durationMs = finishedAt.getTime() - row.createdAt.getTime();
    const event = create(ExecutionFinishedSchema, {
      ...eventHeader(),
      execution: toExecutionMessage(row, { brief: true }),
    });
    deps.outbox.add(em, 'execution.finished', event);
    return true;
  });
}
