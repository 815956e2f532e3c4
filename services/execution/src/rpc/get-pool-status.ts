import { create } from '@bufbuild/protobuf';
import { type GetPoolStatusResponse, GetPoolStatusResponseSchema } from '@assist-tee/proto';
import type { HandlerContext } from '@connectrpc/connect';
import { requireServiceKey } from '@assist-tee/server';
import type { ExecutionDeps } from '../deps.js';

export function getPoolStatus(deps: Pick<ExecutionDeps, 'pool' | 'config'>) {
  return (_: unknown, context: HandlerContext): GetPoolStatusResponse => {
    requireServiceKey(context);
    const environments = deps.pool.status();
    return create(GetPoolStatusResponseSchema, {
      environments,
      reservedMemoryMb: deps.pool.reservedMb(),
      memoryBudgetMb: deps.config.pool.memoryBudgetMb,
    });
  };
}
