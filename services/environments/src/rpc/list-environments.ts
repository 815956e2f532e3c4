import { create } from '@bufbuild/protobuf';
import { EnvironmentEntity } from '@assist-tee/db';
import {
  EnvironmentStatus,
  type ListEnvironmentsRequest,
  type ListEnvironmentsResponse,
  ListEnvironmentsResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant, invalidArgument, pageQuery, toPage } from '@assist-tee/server';
import type { EnvironmentsDeps } from '../deps.js';
import { toEnvironmentMessage } from '../environment-message.js';

/** Newest first, paged by a keyset cursor so pages stay stable while rows are added. */
export function listEnvironments(deps: EnvironmentsDeps) {
  return async (
    request: ListEnvironmentsRequest,
    context: HandlerContext,
  ): Promise<ListEnvironmentsResponse> => {
    const tenantId = callerTenant(context);
    const query = pageQuery(request);
    const statusName = EnvironmentStatus[request.status] as
      keyof typeof EnvironmentStatus | undefined;
    if (statusName === undefined)
      throw invalidArgument('status', `unknown status ${request.status}`);
    const status =
      request.status === EnvironmentStatus.UNSPECIFIED
        ? { $ne: 'DELETED' as const }
        : (statusName as Exclude<typeof statusName, 'UNSPECIFIED'>);
    const rows = await deps.db
      .em()
      .find(
        EnvironmentEntity,
        { status, ...(tenantId === undefined ? {} : { tenantId }), ...query.where },
        query.options,
      );
    const page = toPage(rows, query.pageSize);
    return create(ListEnvironmentsResponseSchema, {
      environments: page.rows.map(toEnvironmentMessage),
      nextPageToken: page.nextPageToken,
    });
  };
}
