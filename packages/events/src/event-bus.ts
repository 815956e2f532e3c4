import {
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '@assist-tee/logger';
import { injectTraceContext } from '@assist-tee/tracing';
import type { Registry } from 'prom-client';
import { ConsumerMetrics } from './consumer-metrics.js';
import { type Consumption, type ConsumeOptions, startConsumer } from './durable-consumer.js';
import { cloudEventHeaders } from './cloud-events.js';
import { assertSubjectPrefix, eventStreamName, eventSubject } from './event-subjects.js';
import {
  type DecodedEvent,
  decodeEventMessage,
  encodeEvent,
  eventTenant,
  type EventMessage,
  type EventType,
  isEventType,
} from './event-types.js';

export interface EventBusOptions {
  /** One or more NATS URLs, comma-separated. */
  servers: string;
  /** Subjects are `${subjectPrefix}.events.${tenant}.${type}`; the stream `${PREFIX}_EVENTS`. */
  subjectPrefix: string;
  /** Connection name, as the server's monitoring shows it. */
  name: string;
  logger: Logger;
  /** The process's metrics: the consumers' events and lag go there. */
  registry?: Registry;
}

export interface EventBus {
  readonly streamName: string;
  /** Creates or updates the stream; connectEventBus calls it. */
  ensureStream(): Promise<void>;
  /**
   * Publishes to `${prefix}.events.${tenant}.${type}` with the CloudEvents headers and
   * Nats-Msg-Id = ce-id = message.eventId, and resolves once JetStream has stored it, so
   * re-publishing the same event id is a no-op. The `traceparent` header carries the trace of
   * the change it reports: the one given (stored with the event in an outbox), or the active one.
   */
  publish<T extends EventType>(
    type: T,
    message: EventMessage<T>,
    traceparent?: string | null,
  ): Promise<void>;
  /** publish() of an event already encoded (encodeEvent), e.g. read back from an outbox. */
  publishEncoded(type: EventType, data: Uint8Array, traceparent?: string | null): Promise<void>;
  /**
   * A durable pull consumer on these types: acks after handle() resolves, redelivers with a
   * delay when it throws, gives up after maxDeliver. Processes with the same durable name
   * share its events.
   */
  consume(options: ConsumeOptions): Promise<Consumption>;
  /** A round trip to JetStream; throws when NATS or JetStream is unavailable. */
  ping(): Promise<void>;
  /** Stops the consumers, then drains the connection. */
  close(): Promise<void>;
}

const DUPLICATE_WINDOW_MS = 2 * 60_000;
const MAX_AGE_MS = 7 * 24 * 60 * 60_000;

export async function connectEventBus(options: EventBusOptions): Promise<EventBus> {
  const { subjectPrefix } = options;
  assertSubjectPrefix(subjectPrefix);
  const logger = options.logger;
  const servers = options.servers.split(',').map((server) => server.trim());

  let nc: NatsConnection;
  try {
    nc = await connect({
      servers,
      name: options.name,
      // Keep trying for as long as the process lives; the status log shows the outages.
      maxReconnectAttempts: -1,
    });
  } catch (error) {
    const reason = (error as Error).message;
    throw new Error(`cannot connect to NATS at ${servers.join(', ')}: ${reason}`, { cause: error });
  }
  void logStatus(nc, logger);

  try {
    const jsm = await jetstreamManager(nc);
    const metrics = options.registry && ConsumerMetrics.of(options.registry);
    const bus = new JetStreamEventBus(nc, jsm, jetstream(nc), subjectPrefix, logger, metrics);
    await bus.ensureStream();
    logger.info({ server: nc.getServer(), stream: bus.streamName }, 'event bus connected');
    return bus;
  } catch (error) {
    await nc.close();
    // Most often JetStream is off (nats-server without -js) or the subjects overlap a stream.
    const reason = (error as Error).message;
    throw new Error(`cannot set up the event stream on NATS at ${servers.join(', ')}: ${reason}`, {
      cause: error,
    });
  }
}

class JetStreamEventBus implements EventBus {
  readonly streamName: string;
  private readonly consumptions = new Set<Consumption>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: Awaited<ReturnType<typeof jetstreamManager>>,
    private readonly js: ReturnType<typeof jetstream>,
    private readonly subjectPrefix: string,
    private readonly logger: Logger,
    private readonly metrics?: ConsumerMetrics,
  ) {
    this.streamName = eventStreamName(subjectPrefix);
  }

  async ensureStream(): Promise<void> {
    const config: Partial<StreamConfig> & { name: string } = {
      name: this.streamName,
      subjects: [`${this.subjectPrefix}.>`],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
      max_age: nanos(MAX_AGE_MS),
      num_replicas: 1,
    };
    try {
      // Creating a stream that exists with this exact config succeeds: the common case.
      await this.jsm.streams.add(config);
    } catch (error) {
      // It exists with another config (an older version's, say): bring it to ours.
      const exists = await this.jsm.streams.info(this.streamName).then(
        () => true,
        () => false,
      );
      if (!exists) throw error;
      const { subjects, duplicate_window, max_age } = config;
      await this.jsm.streams.update(this.streamName, { subjects, duplicate_window, max_age });
    }
  }

  async publish<T extends EventType>(
    type: T,
    message: EventMessage<T>,
    traceparent?: string | null,
  ): Promise<void> {
    await this.send({ type, message } as DecodedEvent, encodeEvent(type, message), traceparent);
  }

  async publishEncoded(
    type: EventType,
    data: Uint8Array,
    traceparent?: string | null,
  ): Promise<void> {
    if (!isEventType(type)) throw new Error(`unknown event type ${JSON.stringify(type)}`);
    // The subject and headers come from the message: an outbox stores only type and bytes.
    await this.send(decodeEventMessage(type, data), data, traceparent);
  }

  private async send(
    event: DecodedEvent,
    data: Uint8Array,
    traceparent: string | null | undefined,
  ): Promise<void> {
    const { type } = event;
    const eventId = event.message.eventId;
    const subject = eventSubject(this.subjectPrefix, eventTenant(event), type);
    const headers = cloudEventHeaders(event);
    if (traceparent) headers.set('traceparent', traceparent);
    else injectTraceContext((key, value) => headers.set(key, value));
    const ack = await this.js.publish(subject, data, { msgID: eventId, headers });
    if (ack.duplicate) this.logger.debug({ type, eventId }, 'event already published');
  }

  async consume(options: ConsumeOptions): Promise<Consumption> {
    const consumption = await startConsumer(
      {
        nc: this.nc,
        js: this.js,
        jsm: this.jsm,
        streamName: this.streamName,
        subjectPrefix: this.subjectPrefix,
        logger: this.logger,
        metrics: this.metrics,
      },
      options,
    );
    const tracked: Consumption = {
      stop: async () => {
        this.consumptions.delete(tracked);
        await consumption.stop();
      },
    };
    this.consumptions.add(tracked);
    return tracked;
  }

  async ping(): Promise<void> {
    await this.jsm.getAccountInfo();
  }

  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    await Promise.all([...this.consumptions].map((consumption) => consumption.stop()));
    await this.nc.drain();
  }
}

/** Logs connection trouble and recovery; ends when the connection closes. */
async function logStatus(nc: NatsConnection, logger: Logger): Promise<void> {
  try {
    for await (const status of nc.status()) {
      switch (status.type) {
        case 'disconnect':
          logger.warn({ server: status.server }, 'NATS disconnected');
          break;
        case 'reconnect':
          logger.info({ server: status.server }, 'NATS reconnected');
          break;
        case 'reconnecting':
          logger.debug('NATS reconnecting');
          break;
        case 'error':
          logger.error({ err: status.error }, 'NATS error');
          break;
        case 'ldm':
          logger.warn({ server: status.server }, 'NATS server entering lame duck mode');
          break;
        case 'staleConnection':
          logger.warn('NATS connection stale');
          break;
        case 'slowConsumer':
          logger.warn(
            { subject: status.sub.getSubject(), pending: status.pending },
            'NATS slow consumer',
          );
          break;
        default:
          break;
      }
    }
  } catch (error) {
    logger.error({ err: error }, 'NATS status stream failed');
  }
}
