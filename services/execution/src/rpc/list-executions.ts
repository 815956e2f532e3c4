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

/** An environment's executions, newest first, without logs and results. */
export function listExecutions(deps: ExecutionDeps) {
  return async (
    request: ListExecutionsRequest,
    context: HandlerContext,
  ): Promise<ListExecutionsResponse> => {
    if (request.environmentId === '') throw invalidArgument('environment_id', 'is required');
    const tenantId = callerTenant(context);
    const query = pageQuery(request);
    if (!isUuid(request.environmentId)) {
      return create(ListExecutionsResponseSchema, {});
    }
    const rows = await deps.db.em().find(
      ExecutionEntity,
      {
        environmentId: request.environmentId,
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
