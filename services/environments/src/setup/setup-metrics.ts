import type { SandboxRuntimeName } from '@assist-tee/runtime-core';
import { Counter, Histogram, type Registry } from 'prom-client';

/** Seconds: storing the modules alone (well under a second) to an install's full 180 s and more. */
const SETUP_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 600];

/**
 * The environments service's setup metrics, in the process's registry: setups by runtime and
 * the environment's outcome, and the dependency installs among them. No label carries an id.
 */
export class SetupMetrics {
  private readonly setups: Counter<'runtime' | 'status'>;
  private readonly duration: Histogram<'runtime' | 'status'>;
  private readonly installDuration: Histogram<'runtime' | 'outcome'>;
  private readonly installedBytes: Counter<'runtime'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.setups = new Counter({
      name: 'assist_tee_setups_total',
      help: "Setups finished, by runtime and the environment's status (ready or failed).",
      labelNames: ['runtime', 'status'],
      registers,
    });
    this.duration = new Histogram({
      name: 'assist_tee_setup_duration_seconds',
      help: 'Time from a setup starting to its outcome written, by runtime and status.',
      labelNames: ['runtime', 'status'],
      buckets: SETUP_BUCKETS,
      registers,
    });
    this.installDuration = new Histogram({
      name: 'assist_tee_dependency_install_duration_seconds',
      help: 'Time a setup spent installing dependencies (only setups that have some), by runtime and outcome (ok or failed).',
      labelNames: ['runtime', 'outcome'],
      buckets: SETUP_BUCKETS,
      registers,
    });
    this.installedBytes = new Counter({
      name: 'assist_tee_dependency_installed_bytes_total',
      help: "Bytes of the dependencies installs wrote into environments' volumes, by runtime.",
      labelNames: ['runtime'],
      registers,
    });
  }

  /** Counts a setup once its outcome is written (not when the environment was deleted first). */
  finished(runtime: SandboxRuntimeName, status: 'ready' | 'failed', ms: number): void {
    this.setups.inc({ runtime, status });
    this.duration.observe({ runtime, status }, ms / 1000);
  }

  /** Observes a dependency install that succeeded, having written `bytes` to the volume. */
  installed(runtime: SandboxRuntimeName, ms: number, bytes: number): void {
    this.installDuration.observe({ runtime, outcome: 'ok' }, ms / 1000);
    this.installedBytes.inc({ runtime }, bytes);
  }

  /** Observes a dependency install that failed, was over a cap, or was cut short. */
  installFailed(runtime: SandboxRuntimeName, ms: number): void {
    this.installDuration.observe({ runtime, outcome: 'failed' }, ms / 1000);
  }
}
