import { Counter, Gauge, type Registry } from 'prom-client';

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

interface Tracked {
  outbox: string;
  backlog: () => Promise<OutboxBacklog>;
}

// One set per registry: a process running several services has an outbox for each.
const byRegistry = new WeakMap<Registry, OutboxMetrics>();

/**
 * The outboxes' metrics in a process's registry, labelled by the outbox's schema. The backlog
 * is read at each scrape, one query per outbox (the unpublished rows have an index of their
 * own); an outbox whose database does not answer is left out rather than failing the scrape.
 */
export class OutboxMetrics {
  private readonly published: Counter<'outbox' | 'type'>;
  private readonly failures: Counter<'outbox'>;
  private readonly live = new Set<Tracked>();
  /** The backlogs being read for the scrape in progress: both gauges use one read. */
  private reading: Promise<Map<string, OutboxBacklog>> | undefined;

  static of(registry: Registry): OutboxMetrics {
    let metrics = byRegistry.get(registry);
    if (metrics === undefined) {
      metrics = new OutboxMetrics(registry);
      byRegistry.set(registry, metrics);
    }
    return metrics;
  }

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
    const backlogGauge = (name: string, help: string, read: (backlog: OutboxBacklog) => number) => {
      const gauge: Gauge<'outbox'> = new Gauge({
        name,
        help,
        labelNames: ['outbox'],
        registers,
        collect: async () => {
          const backlogs = await this.readBacklogs();
          gauge.reset();
          for (const [outbox, backlog] of backlogs) gauge.set({ outbox }, read(backlog));
        },
      });
    };
    backlogGauge(
      'assist_tee_outbox_backlog_events',
      'Events written to the outbox and not published yet.',
      (backlog) => backlog.events,
    );
    backlogGauge(
      'assist_tee_outbox_oldest_unrelayed_age_seconds',
      'How long the oldest unpublished event has waited in the outbox (0 when none waits).',
      (backlog) => backlog.oldestAgeSeconds,
    );
  }

  /** Counts for the outbox `outbox`; its backlog is read at each scrape until end(). */
  track(outbox: string, backlog: () => Promise<OutboxBacklog>): OutboxCounts {
    const tracked: Tracked = { outbox, backlog };
    this.live.add(tracked);
    return {
      published: (type) => this.published.inc({ outbox, type }),
      failed: () => this.failures.inc({ outbox }),
      end: () => this.live.delete(tracked),
    };
  }

  private readBacklogs(): Promise<Map<string, OutboxBacklog>> {
    this.reading ??= this.readAll().finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async readAll(): Promise<Map<string, OutboxBacklog>> {
    // Two outboxes on one schema share its table: read once.
    const outboxes = new Map([...this.live].map((tracked) => [tracked.outbox, tracked]));
    const backlogs = new Map<string, OutboxBacklog>();
    await Promise.all(
      [...outboxes.values()].map(async ({ outbox, backlog }) => {
        const read = await backlog().catch(() => undefined);
        if (read !== undefined) backlogs.set(outbox, read);
      }),
    );
    return backlogs;
  }
}
