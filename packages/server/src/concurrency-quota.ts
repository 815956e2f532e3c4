import { Code, ConnectError } from '@connectrpc/connect';

/** Work of each tenant running at once in this process, up to a limit per tenant. */
export class ConcurrencyQuota {
  private readonly running = new Map<string, number>();

  /** `what` names the work ("executions"), `setting` the variable that sets the limit. */
  constructor(
    private readonly limit: number,
    private readonly what: string,
    private readonly setting: string,
  ) {}

  /**
   * Counts one more for the tenant, or fails with ResourceExhausted naming the quota when the
   * tenant is at its limit. Call the returned function once the work is done.
   */
  acquire(tenantId: string): () => void {
    const count = this.running.get(tenantId) ?? 0;
    if (count >= this.limit) {
      throw new ConnectError(
        `tenant "${tenantId}" already has ${this.limit} ${this.what} running (${this.setting}); try again when one has finished`,
        Code.ResourceExhausted,
      );
    }
    this.running.set(tenantId, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.running.get(tenantId) ?? 1) - 1;
      if (left === 0) this.running.delete(tenantId);
      else this.running.set(tenantId, left);
    };
  }
}
