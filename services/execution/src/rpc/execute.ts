import { create } from '@bufbuild/protobuf';
import {
  type ExecuteRequest,
  type ExecuteResponse,
  ExecuteResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { execute as runExecution } from '../execute.js';

export function execute(deps: ExecutionDeps) {
  return async (request: ExecuteRequest, context: HandlerContext): Promise<ExecuteResponse> =>
    create(ExecuteResponseSchema, {
      execution: await runExecution(deps, callerTenant(context), request),
    });
}
