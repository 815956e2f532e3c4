import { create } from '@bufbuild/protobuf';
import {
  type CreateSessionRequest,
  type CreateSessionResponse,
  CreateSessionResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { toSessionMessage } from '../session-message.js';

export function createSession(deps: ExecutionDeps) {
  return async (
    request: CreateSessionRequest,
    context: HandlerContext,
  ): Promise<CreateSessionResponse> => {
    const row = await deps.sessions.create(callerTenant(context), request);
    return create(CreateSessionResponseSchema, { session: toSessionMessage(row) });
  };
}
