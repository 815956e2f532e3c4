import type { SweepReportRecord } from '@assist-tee/db';
import { Counter, Gauge, type Registry } from 'prom-client';

/** What a sweep removes, by the report's count of it. */
const KINDS = {
  environment: (report) => report.expiredEnvironments,
  session: (report) => report.lostSessions ?? 0,
  container: (report) => report.removedContainers,
  volume: (report) => report.removedVolumes,
  runsc_sandbox: (report) => report.removedRunscSandboxes ?? 0,
} satisfies Record<string, (report: SweepReportRecord) => number>;

/**
 * The reaper's metrics: the sweeps this process ran (a replica that did not get the lock ran
 * none) and what they removed.
 */
export class ReaperMetrics {
  private readonly sweeps: Counter<'outcome'>;
  private readonly removed: Counter<'kind'>;
  private readonly lastSuccess: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.sweeps = new Counter({
      name: 'assist_tee_reaper_sweeps_total',
      help: 'Sweeps this process ran under the lock, by outcome (ok or failed).',
      labelNames: ['outcome'],
      registers,
    });
    this.removed = new Counter({
      name: 'assist_tee_reaper_removed_total',
      help: 'What sweeps removed: expired environments, lost sessions, orphan containers and volumes, stray runsc sandboxes.',
      labelNames: ['kind'],
      registers,
    });
    this.lastSuccess = new Gauge({
      name: 'assist_tee_reaper_last_success_timestamp_seconds',
      help: "Unix time of this process's last successful sweep; 0 until it has run one (another replica may hold the lock).",
      registers,
    });
    // Every series at 0 from the start: increase() sees the first sweep and the first failure.
    for (const kind of Object.keys(KINDS)) this.removed.inc({ kind }, 0);
    for (const outcome of ['ok', 'failed']) this.sweeps.inc({ outcome }, 0);
  }

  swept(report: SweepReportRecord): void {
    this.sweeps.inc({ outcome: 'ok' });
    for (const [kind, count] of Object.entries(KINDS)) this.removed.inc({ kind }, count(report));
    this.lastSuccess.set(Date.now() / 1000);
  }

  failed(): void {
    this.sweeps.inc({ outcome: 'failed' });
  }
}
