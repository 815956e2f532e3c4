import { create } from '@bufbuild/protobuf';
import { type GetPoolStatusResponse, GetPoolStatusResponseSchema } from '@assist-tee/proto';
import type { ExecutionDeps } from '../deps.js';

export function getPoolStatus(deps: Pick<ExecutionDeps, 'pool' | 'config'>) {
  return (): GetPoolStatusResponse => {
    const environments = deps.pool.status();
    return create(GetPoolStatusResponseSchema, {
      environments,
      reservedMemoryMb: deps.pool.reservedMb(),
      memoryBudgetMb: deps.config.pool.memoryBudgetMb,
    });
  };
}
