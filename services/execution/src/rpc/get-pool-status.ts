import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { admin } from '@assist-tee/proto';
import type { ExecutionDeps } from '../deps.js';

/** admin.v1.WarmPoolService/GetPoolStatus; the auth layer refuses tenants' keys on it. */
export function getPoolStatus(deps: Pick<ExecutionDeps, 'pool' | 'config'>) {
  return (): admin.GetPoolStatusResponse => {
    const environments = deps.pool.status();
    const { hits, misses, evictions } = deps.pool.totals();
    return create(admin.GetPoolStatusResponseSchema, {
      environments: environments.map((pool) => ({
        environmentId: pool.environmentId,
        tenantId: pool.tenantId,
        ready: pool.ready,
        starting: pool.starting,
        hits: BigInt(pool.hits),
        misses: BigInt(pool.misses),
        evictions: BigInt(pool.evictions),
        reservedMemoryMb: pool.reservedMb,
        lastUsedTime: timestampFromMs(pool.lastUseAt),
      })),
      ready: sum(environments.map((pool) => pool.ready)),
      starting: sum(environments.map((pool) => pool.starting)),
      hits: BigInt(hits),
      misses: BigInt(misses),
      evictions: BigInt(evictions),
      reservedMemoryMb: deps.pool.reservedMb(),
      memoryBudgetMb: deps.config.pool.memoryBudgetMb,
    });
  };
}

const sum = (values: number[]): number => values.reduce((total, value) => total + value, 0);
