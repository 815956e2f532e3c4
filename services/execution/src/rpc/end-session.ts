import { create } from '@bufbuild/protobuf';
import {
  type EndSessionRequest,
  type EndSessionResponse,
  EndSessionResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { toSessionMessage } from '../session-message.js';

export function endSession(deps: ExecutionDeps) {
  return async (
    request: EndSessionRequest,
    context: HandlerContext,
  ): Promise<EndSessionResponse> => {
    const row = await deps.sessions.endRequested(callerTenant(context), request.id);
    return create(EndSessionResponseSchema, { session: toSessionMessage(row) });
  };
}
