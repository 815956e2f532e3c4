import { create } from '@bufbuild/protobuf';
import {
  type ExecuteRequest,
  ExecuteRequestSchema,
  type ExecuteResponse,
  ExecuteResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { executeOnce } from '../execute-once.js';

export function execute(deps: ExecutionDeps) {
  return async (request: ExecuteRequest, context: HandlerContext): Promise<ExecuteResponse> => {
    const { execution } = await executeOnce(deps, callerTenant(context), request, {
      schema: ExecuteRequestSchema,
      signal: context.signal,
    });
    return create(ExecuteResponseSchema, { execution });
  };
}
