import { create } from '@bufbuild/protobuf';
import { ExecutionEntity } from '@assist-tee/db';
import {
  type ListExecutionsRequest,
  type ListExecutionsResponse,
  ListExecutionsResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant, invalidArgument, isUuid, pageQuery, toPage } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { toExecutionMessage } from '../execution-message.js';

/** An environment's or a session's executions, newest first, without logs and results. */
export function listExecutions(deps: ExecutionDeps) {
  return async (
    request: ListExecutionsRequest,
    context: HandlerContext,
  ): Promise<ListExecutionsResponse> => {
    if (request.environmentId === '' && request.sessionId === '') {
      throw invalidArgument('environment_id', 'is required unless session_id is set');
    }
    const tenantId = callerTenant(context);
    const query = pageQuery(request);
    // No execution has an environment or session id that is not a uuid.
    const ids = [request.environmentId, request.sessionId].filter((id) => id !== '');
    if (!ids.every(isUuid)) return create(ListExecutionsResponseSchema, {});
    const rows = await deps.db.em().find(
      ExecutionEntity,
      {
        ...(request.environmentId === '' ? {} : { environmentId: request.environmentId }),
        ...(request.sessionId === '' ? {} : { sessionId: request.sessionId }),
        ...(tenantId === undefined ? {} : { tenantId }),
        ...query.where,
      },
      // Logs and results (up to the output cap each) are not listed: not even read.
      { ...query.options, exclude: ['logs', 'result'] },
    );
    const page = toPage(rows, query.pageSize);
    return create(ListExecutionsResponseSchema, {
      executions: page.rows.map((row) => toExecutionMessage(row, { brief: true })),
      nextPageToken: page.nextPageToken,
    });
  };
}
