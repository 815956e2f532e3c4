import { create } from '@bufbuild/protobuf';
import { SessionEntity, type SessionStatusName } from '@assist-tee/db';
import {
  type ListSessionsRequest,
  type ListSessionsResponse,
  ListSessionsResponseSchema,
  SessionStatus,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant, invalidArgument, isUuid, pageQuery, toPage } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { toSessionMessage } from '../session-message.js';

/** The caller's sessions newest first, optionally one environment's and of one status. */
export function listSessions(deps: ExecutionDeps) {
  return async (
    request: ListSessionsRequest,
    context: HandlerContext,
  ): Promise<ListSessionsResponse> => {
    const tenantId = callerTenant(context);
    const query = pageQuery(request);
    const status = statusFilter(request.status);
    // No session has an environment id that is not a uuid.
    if (request.environmentId !== '' && !isUuid(request.environmentId)) {
      return create(ListSessionsResponseSchema, {});
    }
    const rows = await deps.db.em().find(
      SessionEntity,
      {
        ...(tenantId === undefined ? {} : { tenantId }),
        ...(request.environmentId === '' ? {} : { environmentId: request.environmentId }),
        ...(status === undefined ? {} : { status }),
        ...query.where,
      },
      query.options,
    );
    const page = toPage(rows, query.pageSize);
    return create(ListSessionsResponseSchema, {
      sessions: page.rows.map((row) => toSessionMessage(deps.sessions.current(row))),
      nextPageToken: page.nextPageToken,
    });
  };
}

/** The status a list asks for; undefined for any. */
function statusFilter(status: SessionStatus): SessionStatusName | undefined {
  switch (status) {
    case SessionStatus.UNSPECIFIED:
      return undefined;
    case SessionStatus.ACTIVE:
      return 'ACTIVE';
    case SessionStatus.ENDED:
      return 'ENDED';
    default:
      throw invalidArgument('status', `is not a session status: ${String(status)}`);
  }
}
