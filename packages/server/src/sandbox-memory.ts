import { ADMISSION_RETRY_DELAY_MS, quotaExceeded } from './errors.js';

/** Memory held for one sandbox or setup until release() (called once its container is gone). */
export interface MemoryReservation {
  readonly mb: number;
  /** A warm sandbox taken by an execution: from now on it counts as running. */
  promote(): void;
  /** Idempotent. */
  release(): void;
}

/**
 * The memory limits of this process's sandboxes, running and warm together, within one budget
 * (TEE_SANDBOX_MEMORY_MB). Running work (executions, setups) is admitted against what running
 * work holds, so warm sandboxes never turn it away: work admitted into memory that warm
 * sandboxes hold waits for them to give it back (see onPressure). Warm sandboxes get only what
 * is free.
 */
export class SandboxMemory {
  private runningMb = 0;
  private warmMb = 0;
  private readonly yielders: ((overMb: number) => Promise<void>)[] = [];

  constructor(readonly totalMb: number) {}

  /** Held beyond the budget: warm memory that running work was admitted into. */
  get overMb(): number {
    return Math.max(0, this.runningMb + this.warmMb - this.totalMb);
  }

  /** Registers what gives warm memory back (removes idle warm sandboxes) under pressure. */
  onPressure(yieldMemory: (overMb: number) => Promise<void>): void {
    this.yielders.push(yieldMemory);
  }

  /**
   * Holds `mb` for running work, or fails at once with ResourceExhausted when running work
   * holds too much to fit it. Resolves once warm sandboxes have given back what it needs.
   * `what` names the work in the refusal ("an execution with limits.memory_mb 512").
   */
  async admit(mb: number, what: string): Promise<MemoryReservation> {
    if (this.runningMb + mb > this.totalMb) {
      throw quotaExceeded(
        'INSTANCE_BUSY',
        `this instance's running sandboxes hold ${this.runningMb} of its ${this.totalMb} MiB (TEE_SANDBOX_MEMORY_MB); ${what} needs ${mb} MiB more; try again when one has finished`,
        {
          resource: 'sandbox_memory',
          limitMb: this.totalMb,
          currentMb: this.runningMb,
          requestedMb: mb,
          setting: 'TEE_SANDBOX_MEMORY_MB',
        },
        ADMISSION_RETRY_DELAY_MS,
      );
    }
    const reservation = this.hold(mb, 'running');
    const over = this.overMb;
    if (over > 0) await Promise.all(this.yielders.map((yieldMemory) => yieldMemory(over)));
    return reservation;
  }

  /** Holds `mb` for a warm sandbox if that much is free, without squeezing anything. */
  reserveWarm(mb: number): MemoryReservation | undefined {
    if (this.runningMb + this.warmMb + mb > this.totalMb) return undefined;
    return this.hold(mb, 'warm');
  }

  private hold(mb: number, initially: 'running' | 'warm'): MemoryReservation {
    let kind: 'running' | 'warm' | 'released' = initially;
    this.add(kind, mb);
    return {
      mb,
      promote: () => {
        if (kind !== 'warm') return;
        this.add('warm', -mb);
        kind = 'running';
        this.add(kind, mb);
      },
      release: () => {
        if (kind === 'released') return;
        this.add(kind, -mb);
        kind = 'released';
      },
    };
  }

  private add(kind: 'running' | 'warm', mb: number): void {
    if (kind === 'running') this.runningMb += mb;
    else this.warmMb += mb;
  }
}
