import { create } from '@bufbuild/protobuf';
import { ExecutionEntity } from '@assist-tee/db';
import {
  type ListExecutionsRequest,
  type ListExecutionsResponse,
  ListExecutionsResponseSchema,
} from '@assist-tee/proto';
import {
  decodePageToken,
  encodePageToken,
  invalidArgument,
  isUuid,
  resolvePageSize,
} from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { toExecutionMessage } from '../execution-message.js';

/** An environment's executions, newest first, without logs and results. */
export function listExecutions(deps: ExecutionDeps) {
  return async (request: ListExecutionsRequest): Promise<ListExecutionsResponse> => {
    if (request.environmentId === '') throw invalidArgument('environment_id', 'is required');
    const pageSize = resolvePageSize(request.pageSize);
    const cursor = decodePageToken(request.pageToken);
    if (!isUuid(request.environmentId)) {
      return create(ListExecutionsResponseSchema, {});
    }
    const rows = await deps.db.em().find(
      ExecutionEntity,
      {
        environmentId: request.environmentId,
        ...(cursor && {
          $or: [
            { createdAt: { $lt: cursor.createdAt } },
            { createdAt: cursor.createdAt, id: { $lt: cursor.id } },
          ],
        }),
      },
      { orderBy: { createdAt: 'desc', id: 'desc' }, limit: pageSize + 1 },
    );
    const page = rows.slice(0, pageSize);
    const last = page.at(-1);
    return create(ListExecutionsResponseSchema, {
      executions: page.map((row) => toExecutionMessage(row, { brief: true })),
      nextPageToken: rows.length > pageSize && last ? encodePageToken(last) : '',
    });
  };
}
