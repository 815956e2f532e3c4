import { create } from '@bufbuild/protobuf';
import { EnvironmentEntity } from '@assist-tee/db';
import {
  EnvironmentStatus,
  type ListEnvironmentsRequest,
  type ListEnvironmentsResponse,
  ListEnvironmentsResponseSchema,
} from '@assist-tee/proto';
import {
  decodePageToken,
  encodePageToken,
  invalidArgument,
  resolvePageSize,
} from '@assist-tee/server';
import type { EnvironmentsDeps } from '../deps.js';
import { toEnvironmentMessage } from '../environment-message.js';

/** Newest first, paged by a keyset cursor so pages stay stable while rows are added. */
export function listEnvironments(deps: EnvironmentsDeps) {
  return async (request: ListEnvironmentsRequest): Promise<ListEnvironmentsResponse> => {
    const pageSize = resolvePageSize(request.pageSize);
    const cursor = decodePageToken(request.pageToken);
    const statusName = EnvironmentStatus[request.status] as
      keyof typeof EnvironmentStatus | undefined;
    if (statusName === undefined)
      throw invalidArgument('status', `unknown status ${request.status}`);
    const status =
      request.status === EnvironmentStatus.UNSPECIFIED
        ? { $ne: 'DELETED' as const }
        : (statusName as Exclude<typeof statusName, 'UNSPECIFIED'>);
    const rows = await deps.db.em().find(
      EnvironmentEntity,
      {
        status,
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
    return create(ListEnvironmentsResponseSchema, {
      environments: page.map(toEnvironmentMessage),
      nextPageToken: rows.length > pageSize && last ? encodePageToken(last) : '',
    });
  };
}
