import { create } from '@bufbuild/protobuf';
import {
  type CreateSessionRequest,
  CreateSessionRequestSchema,
  type CreateSessionResponse,
  CreateSessionResponseSchema,
  SessionSchema,
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
    const caller = callerTenant(context);
    const { answer } = await deps.idempotency.run(
      {
        rpc: 'CreateSession',
        tenantId: caller,
        requestId: request.requestId,
        request: { schema: CreateSessionRequestSchema, message: request },
        stored: SessionSchema,
        signal: context.signal,
      },
      async () => toSessionMessage(await deps.sessions.create(caller, request)),
    );
    return create(CreateSessionResponseSchema, { session: answer });
  };
}
