import { perRegistry, ScrapedReadings } from '@assist-tee/metrics';
import { Counter, type Registry } from 'prom-client';

/** What an outbox has not published yet: its rows, and how long the oldest has waited. */
export interface OutboxBacklog {
  events: number;
  oldestAgeSeconds: number;
}

/** One outbox's counts, as it publishes. */
export interface OutboxCounts {
  published(type: string): void;
  failed(): void;
  /** The outbox closed: its backlog is no longer read. */
  end(): void;
}

export const NO_OUTBOX_COUNTS: OutboxCounts = {
  published: () => undefined,
  failed: () => undefined,
  end: () => undefined,
};

/**
 * The outboxes' metrics in a process's registry (one set per registry: a process running
 * several services has an outbox for each), labelled by the outbox's schema. The backlog is
 * read at each scrape, one query per outbox (the unpublished rows have an index of their own).
 */
export class OutboxMetrics {
  static readonly of = perRegistry((registry) => new OutboxMetrics(registry));
  private readonly published: Counter<'outbox' | 'type'>;
  private readonly failures: Counter<'outbox'>;
  // Two outboxes on one schema share its table, and are read once.
  private readonly backlogs = new ScrapedReadings<OutboxBacklog>('outbox', (a) => a);

  private constructor(registry: Registry) {
    const registers = [registry];
    this.published = new Counter({
      name: 'assist_tee_events_published_total',
      help: 'Events the outbox published to JetStream, by outbox and event type (a re-publish after a lost mark counts again).',
      labelNames: ['outbox', 'type'],
      registers,
    });
    this.failures = new Counter({
      name: 'assist_tee_outbox_publish_failures_total',
      help: 'Publishes that failed (NATS unavailable): the event waits in the outbox for the relay.',
      labelNames: ['outbox'],
      registers,
    });
    this.backlogs.gauge(
      registry,
      'assist_tee_outbox_backlog_events',
      'Events written to the outbox and not published yet.',
      (backlog) => backlog.events,
    );
    this.backlogs.gauge(
      registry,
      'assist_tee_outbox_oldest_unrelayed_age_seconds',
      'How long the oldest unpublished event has waited in the outbox (0 when none waits).',
      (backlog) => backlog.oldestAgeSeconds,
    );
  }

  /** Counts for the outbox `outbox`; its backlog is read at each scrape until end(). */
  track(outbox: string, backlog: () => Promise<OutboxBacklog>): OutboxCounts {
    return {
      published: (type) => this.published.inc({ outbox, type }),
      failed: () => this.failures.inc({ outbox }),
      end: this.backlogs.track(outbox, outbox, backlog),
    };
  }
}
