import type { ExecutionStatusName } from '@assist-tee/db';
import { type Environment, Runtime } from '@assist-tee/proto';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { WarmPool } from './warm-pool.js';

/** Seconds: a warm call of a few milliseconds to a handler's full 300 s. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const MB = 1024 * 1024;

/**
 * The execution service's metrics, in the process's registry. Executions are counted by
 * runtime, outcome and start (warm: a sandbox that was ready, a session's included; cold: one
 * started for the call); the pool's state is read at each scrape. No label carries an id.
 */
export class ExecutionMetrics {
  private readonly executions: Counter<'runtime' | 'status' | 'start'>;
  private readonly duration: Histogram<'runtime' | 'start'>;

  constructor(registry: Registry, pool: WarmPool, memoryBudgetMb: number) {
    const registers = [registry];
    this.executions = new Counter({
      name: 'assist_tee_executions_total',
      help: 'Executions finished, by runtime, outcome status and start (warm or cold).',
      labelNames: ['runtime', 'status', 'start'],
      registers,
    });
    this.duration = new Histogram({
      name: 'assist_tee_execution_duration_seconds',
      help: 'Time from an execution arriving to its outcome written, by runtime and start.',
      labelNames: ['runtime', 'start'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    const fromPool = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    const sum = (read: (status: ReturnType<WarmPool['status']>[number]) => number) => () =>
      pool.status().reduce((total, status) => total + read(status), 0);
    fromPool(
      'assist_tee_pool_ready_sandboxes',
      'Warm sandboxes ready to take a call.',
      sum((status) => status.ready),
    );
    fromPool(
      'assist_tee_pool_starting_sandboxes',
      'Warm sandboxes being started.',
      sum((status) => status.starting),
    );
    fromPool(
      'assist_tee_pool_reserved_memory_bytes',
      'Memory limits of the sandboxes the pool holds, starts or is still removing.',
      () => pool.reservedMb() * MB,
    );
    fromPool(
      'assist_tee_pool_memory_budget_bytes',
      'The pool budget (TEE_POOL_MEMORY_MB).',
      () => memoryBudgetMb * MB,
    );
    const totals = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          // The pool keeps the count; the scrape reports it.
          this.reset();
          this.inc(read());
        },
      });
    totals(
      'assist_tee_pool_hits_total',
      'Executions that took a warm sandbox.',
      () => pool.totals().hits,
    );
    totals(
      'assist_tee_pool_misses_total',
      'Executions with the default limits that found no warm sandbox.',
      () => pool.totals().misses,
    );
    totals(
      'assist_tee_pool_evictions_total',
      'Unused warm sandboxes removed to make room for others.',
      () => pool.totals().evictions,
    );
  }

  /** Counts an execution once its outcome is written. */
  finished(environment: Environment, status: ExecutionStatusName, warm: boolean, ms: number): void {
    const runtime = runtimeLabel(environment);
    const start = warm ? 'warm' : 'cold';
    this.executions.inc({ runtime, status, start });
    this.duration.observe({ runtime, start }, ms / 1000);
  }
}

/** The environment's runtime as a metric label: `deno`, `bun`. */
export function runtimeLabel(environment: Environment): string {
  return (Runtime[environment.runtime] ?? 'UNSPECIFIED').toLowerCase();
}
