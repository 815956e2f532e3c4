import type { Environment } from '@assist-tee/proto';
import { Histogram, type Registry } from 'prom-client';
import { runtimeLabel } from './execution-metrics.js';
import type { SandboxObserver } from './runner-sandbox.js';

/** Seconds: a warm run of a few milliseconds to a handler's full 300 s. */
const RUN_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** Seconds: a runsc start takes about half a second here; a slow one, up to the startup timeout. */
const START_BUCKETS = [0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30];
const REMOVAL_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * How long sandboxes take to start (launch to the runner ready), run and be removed, for every
 * sandbox this process launches: cold, warm and sessions'.
 */
export class SandboxMetrics {
  private readonly start: Histogram<'runtime' | 'outcome'>;
  private readonly run: Histogram<'runtime'>;
  private readonly removal: Histogram<'outcome'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.start = new Histogram({
      name: 'assist_tee_sandbox_start_duration_seconds',
      help: 'Time from launching a sandbox to its runner ready, by runtime and outcome (ok, failed).',
      labelNames: ['runtime', 'outcome'],
      buckets: START_BUCKETS,
      registers,
    });
    this.run = new Histogram({
      name: 'assist_tee_sandbox_run_duration_seconds',
      help: 'Time a sandbox took for one run (a handler call or a snippet), by runtime.',
      labelNames: ['runtime'],
      buckets: RUN_BUCKETS,
      registers,
    });
    this.removal = new Histogram({
      name: 'assist_tee_sandbox_removal_duration_seconds',
      help: 'Time to kill and remove a sandbox, by outcome (ok, failed).',
      labelNames: ['outcome'],
      buckets: REMOVAL_BUCKETS,
      registers,
    });
  }

  /** The observer of one sandbox of this environment. */
  observer(environment: Environment): SandboxObserver {
    const runtime = runtimeLabel(environment);
    const outcome = (ok: boolean) => (ok ? 'ok' : 'failed');
    return {
      started: (seconds, ok) => this.start.observe({ runtime, outcome: outcome(ok) }, seconds),
      ran: (seconds) => this.run.observe({ runtime }, seconds),
      removed: (seconds, ok) => this.removal.observe({ outcome: outcome(ok) }, seconds),
    };
  }
}
