import { create } from '@bufbuild/protobuf';
import { eventHeader } from '@assist-tee/events';
import {
  DeletionReason,
  type DeleteEnvironmentRequest,
  DeleteEnvironmentRequestSchema,
  type DeleteEnvironmentResponse,
  DeleteEnvironmentResponseSchema,
  EnvironmentDeletedSchema,
} from '@assist-tee/proto';
import { environmentVolumeName } from '@assist-tee/sandbox';
import type { HandlerContext } from '@connectrpc/connect';
import {
  abortReason,
  callerTenant,
  invalidArgument,
  notFound,
  permissionDenied,
} from '@assist-tee/server';
import type { EnvironmentsDeps } from '../deps.js';
import { toEnvironmentMessage } from '../environment-message.js';
import { findEnvironment } from './get-environment.js';

/** DeleteEnvironment under its request_id: a retry gets the first call's answer. */
export function deleteEnvironment(deps: EnvironmentsDeps) {
  const deleteOnce = deleteEnvironmentOnce(deps);
  return async (
    request: DeleteEnvironmentRequest,
    context: HandlerContext,
  ): Promise<DeleteEnvironmentResponse> => {
    const call = {
      rpc: 'DeleteEnvironment',
      tenantId: callerTenant(context),
      requestId: request.requestId,
      request: { schema: DeleteEnvironmentRequestSchema, message: request },
      stored: DeleteEnvironmentResponseSchema,
      signal: context.signal,
    };
    return (await deps.idempotency.run(call, () => deleteOnce(request, context))).answer;
  };
}

/**
 * Marks the environment DELETED first, so no new execution starts on it, then removes the
 * sandboxes still running on it (their executions end as SANDBOX_ERROR, EnvironmentDeleted),
 * then its volume. A volume still in use is retried briefly; the reaper removes whatever is left.
 */
function deleteEnvironmentOnce(deps: EnvironmentsDeps) {
  return async (
    request: DeleteEnvironmentRequest,
    context: HandlerContext,
  ): Promise<DeleteEnvironmentResponse> => {
    if (!(request.reason in DeletionReason)) {
      throw invalidArgument('reason', `unknown deletion reason ${Number(request.reason)}`);
    }
    const tenantId = callerTenant(context);
    // EXPIRED tells subscribers the TTL ran out: only the reaper (the services' key) says so.
    if (request.reason === DeletionReason.EXPIRED && tenantId !== undefined) {
      throw permissionDenied(
        'REAPER_ONLY_REASON',
        'reason: DELETION_REASON_EXPIRED is set by the reaper only; send REQUESTED or leave it unset',
        { field: 'reason' },
      );
    }
    const em = deps.db.em();
    const row = await findEnvironment(em, request.id, tenantId);
    if (row.status === 'DELETED') throw notFound('environment', request.id);
    const now = new Date();
    row.status = 'DELETED';
    row.deletedAt = now;
    row.updatedAt = now;
    const deleted = create(EnvironmentDeletedSchema, {
      ...eventHeader(),
      environmentId: row.id,
      tenantId: row.tenantId,
      reason:
        request.reason === DeletionReason.UNSPECIFIED ? DeletionReason.REQUESTED : request.reason,
    });
    await deps.outbox.flushWith(em, 'environment.deleted', deleted);

    // A setup still running here ends now; its outcome is not recorded over the deletion.
    deps.work.abort(
      row.id,
      abortReason('EnvironmentDeleted', 'the environment was deleted during its setup'),
    );
    await removeSandboxesThenVolume(deps, row.id);
    deps.logger.info({ environmentId: row.id }, 'environment deleted');
    return create(DeleteEnvironmentResponseSchema, { environment: toEnvironmentMessage(row) });
  };
}

/**
 * Removes the environment's sandboxes, then its volume. A sandbox whose start was under way
 * (a warm one) appears after the first listing and holds the volume: each retry removes the
 * sandboxes again before it tries the volume.
 */
async function removeSandboxesThenVolume(
  deps: EnvironmentsDeps,
  environmentId: string,
): Promise<void> {
  const attempts = 10;
  for (let attempt = 1; ; attempt++) {
    const containers = await deps.sandbox.listContainers({ environmentId });
    await Promise.all(containers.map((container) => deps.sandbox.removeContainer(container.id)));
    try {
      await deps.sandbox.removeVolume(environmentVolumeName(environmentId));
      return;
    } catch (error) {
      if (attempt === attempts) {
        deps.logger.warn(
          { err: error, environmentId },
          'volume still in use; the reaper will remove it',
        );
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}
