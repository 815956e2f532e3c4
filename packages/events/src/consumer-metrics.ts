import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * What a consumer did with an event: handled (acked), retried (nak with a delay), dropped
 * (terminated: undecodable, or failed maxDeliver times), skipped (a type it does not want,
 * which nats-server 2.9 delivers all the same).
 */
export type ConsumerOutcome = 'handled' | 'retried' | 'dropped' | 'skipped';

/** A consumer's lag, from JetStream's consumer info. */
export interface ConsumerLag {
  pending: number;
  ackPending: number;
}

/** One consumption's counts, as its loop reports them. */
export interface ConsumerCounts {
  received(redelivered: boolean): void;
  outcome(outcome: ConsumerOutcome): void;
  /** The consumption stopped: its lag is no longer read. */
  end(): void;
}

export const NO_CONSUMER_COUNTS: ConsumerCounts = {
  received: () => undefined,
  outcome: () => undefined,
  end: () => undefined,
};

interface Tracked {
  consumer: string;
  durable: string;
  lag: () => Promise<ConsumerLag>;
}

// One set per registry: a process may run several buses' consumers on it.
const byRegistry = new WeakMap<Registry, ConsumerMetrics>();

/**
 * The durable consumers' metrics in a process's registry, labelled by the consumer's role
 * (ConsumeOptions.metricsName), never by a per-instance durable name. The lag is asked of
 * JetStream at each scrape, one consumer info per live consumption; one that cannot be read
 * is left out rather than failing the scrape.
 */
export class ConsumerMetrics {
  private readonly events: Counter<'consumer' | 'outcome'>;
  private readonly redeliveries: Counter<'consumer'>;
  private readonly live = new Set<Tracked>();
  /** The lags being read for the scrape in progress: both gauges use one read. */
  private reading: Promise<Map<string, ConsumerLag>> | undefined;

  static of(registry: Registry): ConsumerMetrics {
    let metrics = byRegistry.get(registry);
    if (metrics === undefined) {
      metrics = new ConsumerMetrics(registry);
      byRegistry.set(registry, metrics);
    }
    return metrics;
  }

  private constructor(registry: Registry) {
    const registers = [registry];
    this.events = new Counter({
      name: 'assist_tee_consumer_events_total',
      help: 'Events consumers received, by consumer and outcome (handled, retried, dropped, skipped).',
      labelNames: ['consumer', 'outcome'],
      registers,
    });
    this.redeliveries = new Counter({
      name: 'assist_tee_consumer_redeliveries_total',
      help: 'Events consumers received again (redelivered after a failure or an ack timeout).',
      labelNames: ['consumer'],
      registers,
    });
    const lagGauge = (name: string, help: string, read: (lag: ConsumerLag) => number) => {
      const gauge: Gauge<'consumer'> = new Gauge({
        name,
        help,
        labelNames: ['consumer'],
        registers,
        collect: async () => {
          const lags = await this.readLags();
          gauge.reset();
          for (const [consumer, lag] of lags) gauge.set({ consumer }, read(lag));
        },
      });
    };
    lagGauge(
      'assist_tee_consumer_pending_events',
      "Events stored that the consumer has yet to receive (JetStream's num_pending).",
      (lag) => lag.pending,
    );
    lagGauge(
      'assist_tee_consumer_ack_pending_events',
      "Events the consumer received and has not acked yet (JetStream's num_ack_pending).",
      (lag) => lag.ackPending,
    );
  }

  /** Counts for a consumption labelled `consumer`; its lag is read at each scrape until end(). */
  track(consumer: string, durable: string, lag: () => Promise<ConsumerLag>): ConsumerCounts {
    const tracked: Tracked = { consumer, durable, lag };
    this.live.add(tracked);
    return {
      received: (redelivered) => {
        if (redelivered) this.redeliveries.inc({ consumer });
      },
      outcome: (outcome) => this.events.inc({ consumer, outcome }),
      end: () => this.live.delete(tracked),
    };
  }

  private readLags(): Promise<Map<string, ConsumerLag>> {
    this.reading ??= this.readAll().finally(() => (this.reading = undefined));
    return this.reading;
  }

  private async readAll(): Promise<Map<string, ConsumerLag>> {
    // A durable consumed twice in this process is read once.
    const durables = new Map([...this.live].map((tracked) => [tracked.durable, tracked]));
    const lags = new Map<string, ConsumerLag>();
    await Promise.all(
      [...durables.values()].map(async ({ consumer, lag }) => {
        const read = await lag().catch(() => undefined);
        if (read === undefined) return;
        const sum = lags.get(consumer) ?? { pending: 0, ackPending: 0 };
        lags.set(consumer, {
          pending: sum.pending + read.pending,
          ackPending: sum.ackPending + read.ackPending,
        });
      }),
    );
    return lags;
  }
}
