import { create } from '@bufbuild/protobuf';
import {
  type ExecuteRequest,
  type ExecuteResponse,
  ExecuteResponseSchema,
} from '@assist-tee/proto';
import type { ExecutionDeps } from '../deps.js';
import { execute as runExecution } from '../execute.js';

export function execute(deps: ExecutionDeps) {
  return async (request: ExecuteRequest): Promise<ExecuteResponse> =>
    create(ExecuteResponseSchema, { execution: await runExecution(deps, request) });
}
