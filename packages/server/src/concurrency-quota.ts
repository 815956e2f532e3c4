import { ADMISSION_RETRY_DELAY_MS, type ErrorReason, quotaExceeded } from './errors.js';

type Work = 'executions' | 'setups';

const TENANT_REASONS: Record<Work, ErrorReason> = {
  executions: 'TENANT_QUOTA_CONCURRENT_EXECUTIONS',
  setups: 'TENANT_QUOTA_CONCURRENT_SETUPS',
};

/**
 * Work running at once in this process, up to a limit per key: per tenant, or for the whole
 * instance under one key.
 */
export class ConcurrencyQuota {
  private readonly running = new Map<string, number>();

  /**
   * `what` names the work, `setting` the variable that sets the limit, `scope` whether a key
   * is a tenant's (the refusal names it, reason TENANT_QUOTA_CONCURRENT_<WHAT>) or the
   * instance's (reason INSTANCE_BUSY).
   */
  constructor(
    private readonly limit: number,
    private readonly what: Work,
    private readonly setting: string,
    private readonly scope: 'tenant' | 'instance' = 'tenant',
  ) {}

  /**
   * Counts one more for the key, or fails with ResourceExhausted naming the limit when the key
   * is at it. Call the returned function once the work is done.
   */
  acquire(key: string): () => void {
    const count = this.running.get(key) ?? 0;
    if (count >= this.limit) {
      const tenant = this.scope === 'tenant';
      throw quotaExceeded(
        tenant ? TENANT_REASONS[this.what] : 'INSTANCE_BUSY',
        `${tenant ? `tenant "${key}"` : 'this instance'} already has ${this.limit} ${this.what} running (${this.setting}); try again when one has finished`,
        {
          ...(tenant ? { tenant: key } : { resource: `running_${this.what}` }),
          limit: this.limit,
          current: count,
          setting: this.setting,
        },
        ADMISSION_RETRY_DELAY_MS,
      );
    }
    this.running.set(key, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.running.get(key) ?? 1) - 1;
      if (left === 0) this.running.delete(key);
      else this.running.set(key, left);
    };
  }
}

/** A limit on work running at once in this whole process: every tenant and the services' key. */
export interface InstanceLimit {
  /** Counts one more, or fails with ResourceExhausted; call the returned function when done. */
  acquire(): () => void;
}

export function instanceLimit(limit: number, what: Work, setting: string): InstanceLimit {
  const quota = new ConcurrencyQuota(limit, what, setting, 'instance');
  return { acquire: () => quota.acquire('') };
}

/**
 * Takes each limit in order (a tenant's quota, then the instance's), runs `work`, and gives
 * back what was taken, also when a later limit refuses.
 */
export async function withinLimits<T>(
  acquire: (() => () => void)[],
  work: () => Promise<T>,
): Promise<T> {
  const releases: (() => void)[] = [];
  try {
    for (const take of acquire) releases.push(take());
    return await work();
  } finally {
    for (const release of releases) release();
  }
}
