import { create } from '@bufbuild/protobuf';
import { admin } from '@assist-tee/proto';
import type { ExecutionDeps } from '../deps.js';

/** admin.v1.WarmPoolService/GetPoolStatus; the auth layer refuses tenants' keys on it. */
export function getPoolStatus(deps: Pick<ExecutionDeps, 'pool' | 'config'>) {
  return (): admin.GetPoolStatusResponse =>
    create(admin.GetPoolStatusResponseSchema, {
      environments: deps.pool.status(),
      reservedMemoryMb: deps.pool.reservedMb(),
      memoryBudgetMb: deps.config.pool.memoryBudgetMb,
    });
}
