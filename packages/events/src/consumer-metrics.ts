import { perRegistry, ScrapedReadings } from '@assist-tee/metrics';
import { Counter, type Registry } from 'prom-client';

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

/**
 * The durable consumers' metrics in a process's registry (one set per registry: a process may
 * run several buses' consumers on it), labelled by the consumer's role
 * (ConsumeOptions.metricsName), never by a per-instance durable name. The lag is asked of
 * JetStream at each scrape, one consumer info per live durable.
 */
export class ConsumerMetrics {
  static readonly of = perRegistry((registry) => new ConsumerMetrics(registry));
  private readonly events: Counter<'consumer' | 'outcome'>;
  private readonly redeliveries: Counter<'consumer'>;
  // A role consumed through several durables in one process: their lags add up.
  private readonly lags = new ScrapedReadings<ConsumerLag>('consumer', (a, b) => ({
    pending: a.pending + b.pending,
    ackPending: a.ackPending + b.ackPending,
  }));

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
    this.lags.gauge(
      registry,
      'assist_tee_consumer_pending_events',
      "Events stored that the consumer has yet to receive (JetStream's num_pending).",
      (lag) => lag.pending,
    );
    this.lags.gauge(
      registry,
      'assist_tee_consumer_ack_pending_events',
      "Events the consumer received and has not acked yet (JetStream's num_ack_pending).",
      (lag) => lag.ackPending,
    );
  }

  /** Counts for a consumption labelled `consumer`; its lag is read at each scrape until end(). */
  track(consumer: string, durable: string, lag: () => Promise<ConsumerLag>): ConsumerCounts {
    const end = this.lags.track(consumer, durable, lag);
    return {
      received: (redelivered) => {
        if (redelivered) this.redeliveries.inc({ consumer });
      },
      outcome: (outcome) => this.events.inc({ consumer, outcome }),
      end,
    };
  }
}
