import { create } from '@bufbuild/protobuf';
import { ExecutionEntity } from '@assist-tee/db';
import {
  type GetExecutionRequest,
  type GetExecutionResponse,
  GetExecutionResponseSchema,
} from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { callerTenant, isUuid, notFound } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';
import { toExecutionMessage } from '../execution-message.js';

export function getExecution(deps: ExecutionDeps) {
  return async (
    request: GetExecutionRequest,
    context: HandlerContext,
  ): Promise<GetExecutionResponse> => {
    const tenantId = callerTenant(context);
    const row = isUuid(request.id)
      ? await deps.db.em().findOne(ExecutionEntity, {
          id: request.id,
          ...(tenantId === undefined ? {} : { tenantId }),
        })
      : null;
    if (row === null) throw notFound('execution', request.id);
    return create(GetExecutionResponseSchema, { execution: toExecutionMessage(row) });
  };
}
