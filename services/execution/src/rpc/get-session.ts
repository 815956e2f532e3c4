import { create } from '@bufbuild/protobuf';
import { SessionEntity } from '@assist-tee/db';
import {
  type GetSessionRequest,
  type GetSessionResponse,
  GetSessionResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant, isUuid, notFound } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { toSessionMessage } from '../session-message.js';

/** One of the caller's sessions; another tenant's is NotFound, as if it did not exist. */
export function getSession(deps: ExecutionDeps) {
  return async (
    request: GetSessionRequest,
    context: HandlerContext,
  ): Promise<GetSessionResponse> => {
    const tenantId = callerTenant(context);
    const row = isUuid(request.id)
      ? await deps.db.em().findOne(SessionEntity, {
          id: request.id,
          ...(tenantId === undefined ? {} : { tenantId }),
        })
      : null;
    if (row === null) throw notFound('session', request.id);
    return create(GetSessionResponseSchema, {
      session: toSessionMessage(deps.sessions.current(row)),
    });
  };
}
