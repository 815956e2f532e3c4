import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  JetStreamApiCodes,
  JetStreamApiError,
  type JsMsg,
  ReplayPolicy,
} from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '@assist-tee/logger';
import { extractTraceContext, inSpan, SpanKind } from '@assist-tee/tracing';
import { type ConsumerMetrics, NO_CONSUMER_COUNTS } from './consumer-metrics.js';
import { decodeEvent, eventFilterSubjects, eventTypeOf } from './event-subjects.js';
import { type EventType, isEventType, type ReceivedEvent } from './event-types.js';

export interface ConsumeOptions {
  /** The consumer's durable name; processes using the same name share its messages. */
  durable: string;
  /**
   * The consumer's label in the metrics, by default the durable name. A durable per instance
   * gives its role here, so that the label stays bounded.
   */
  metricsName?: string;
  types: EventType[];
  /** Resolves: the event is acked. Throws: it is redelivered after a delay, up to maxDeliver. */
  handle: (event: ReceivedEvent) => void | Promise<void>;
  /** Deliveries before a failing event is given up (terminated and logged). Default 5. */
  maxDeliver?: number;
  /** Delay before the first redelivery of a failed event, doubling after each. Default 1 s. */
  retryDelayMs?: number;
  /**
   * Failures that say nothing about the event (its database is restarting): the event is
   * retried in place every retryDelayMs, without using up deliveries, until the handler
   * succeeds or the consumer stops.
   */
  isTransient?: (error: unknown) => boolean;
  /**
   * Where a new durable starts: "all" retained events (default), or only those published
   * after it was created (a consumer that acts on what its own process is doing now).
   */
  deliver?: 'all' | 'new';
  /** Removes the durable after this long without a process consuming it (one per instance). */
  inactiveThresholdMs?: number;
}

export interface Consumption {
  /** Stops pulling, lets the event in hand finish, returns the rest to the consumer. */
  stop(): Promise<void>;
}

interface ConsumerContext {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  streamName: string;
  subjectPrefix: string;
  logger: Logger;
  metrics?: ConsumerMetrics;
}

const ACK_WAIT_MS = 30_000;
// Well inside ACK_WAIT_MS, so a long handler never has its event redelivered under it.
const WORKING_INTERVAL_MS = 10_000;
const MAX_RETRY_DELAY_MS = 60_000;
const RESTART_DELAY_MS = 1_000;
// Small: events wait in this buffer while the handler works on the one before them.
const PULL_BATCH = 8;
const DURABLE_NAME = /^[A-Za-z0-9_-]+$/;

/** Creates or updates the durable consumer, then handles its events one at a time. */
export async function startConsumer(
  context: ConsumerContext,
  options: ConsumeOptions,
): Promise<Consumption> {
  const { durable } = options;
  if (!DURABLE_NAME.test(durable)) {
    throw new Error(`invalid durable name ${JSON.stringify(durable)}: letters, digits, _ and -`);
  }
  const types = new Set(options.types);
  if (types.size === 0) throw new Error('consume needs at least one event type');
  for (const type of types) {
    if (!isEventType(type)) throw new Error(`unknown event type ${JSON.stringify(type)}`);
  }
  const maxDeliver = options.maxDeliver ?? 5;
  const retryDelayMs = options.retryDelayMs ?? 1_000;
  const logger = context.logger.child({ durable });

  await ensureConsumer(context, consumerConfig(context, options, [...types].sort(), maxDeliver));
  const counts =
    context.metrics?.track(options.metricsName ?? durable, durable, async () => {
      const info = await context.jsm.consumers.info(context.streamName, durable);
      return { pending: info.num_pending, ackPending: info.num_ack_pending };
    }) ?? NO_CONSUMER_COUNTS;

  const stopSignal = new AbortController();
  let messages: ConsumerMessages | undefined;

  const handleOne = async (msg: JsMsg): Promise<void> => {
    counts.received(msg.redelivered);
    // Only when the server could not filter (nats-server before 2.10): told by the subject,
    // so the message is never decoded.
    const type = eventTypeOf(context.subjectPrefix, msg.subject);
    if (type !== undefined && !types.has(type)) {
      msg.ack();
      counts.outcome('skipped');
      return;
    }
    let event: ReceivedEvent;
    try {
      const decoded = decodeEvent(context.subjectPrefix, msg.subject, msg.data);
      event = {
        ...decoded,
        subject: msg.subject,
        streamSequence: msg.seq,
        redelivered: msg.redelivered,
      };
    } catch (error) {
      // Retrying cannot make these bytes decode: drop the message, keep the loop.
      logger.error(
        { err: error, subject: msg.subject, seq: msg.seq },
        'dropping an undecodable event',
      );
      msg.term();
      counts.outcome('dropped');
      return;
    }
    const fields = { type: event.type, eventId: event.message.eventId, seq: msg.seq };
    const working = setInterval(() => msg.working(), WORKING_INTERVAL_MS);
    try {
      // The span joins the trace of the change the event reports (its traceparent header).
      const parent = extractTraceContext((key) => msg.headers?.get(key) || undefined);
      await inSpan(
        `${event.type} process`,
        { parent, kind: SpanKind.CONSUMER, attributes: consumerSpanAttributes(durable, event) },
        () => handleUntilNotTransient(event),
      );
      msg.ack();
      counts.outcome('handled');
    } catch (error) {
      const deliveries = msg.info.deliveryCount;
      if (deliveries >= maxDeliver) {
        logger.error({ err: error, ...fields, deliveries }, 'handling an event failed; giving up');
        msg.term();
        counts.outcome('dropped');
      } else {
        const delay = Math.min(retryDelayMs * 2 ** (deliveries - 1), MAX_RETRY_DELAY_MS);
        logger.warn(
          { err: error, ...fields, deliveries, retryInMs: delay },
          'handling an event failed',
        );
        msg.nak(delay);
        counts.outcome('retried');
      }
    } finally {
      clearInterval(working);
    }
  };

  const handleUntilNotTransient = async (event: ReceivedEvent): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await options.handle(event);
      } catch (error) {
        if (!options.isTransient?.(error) || stopSignal.signal.aborted) throw error;
        if (attempt === 1) {
          logger.warn({ err: error, eventId: event.message.eventId }, 'retrying an event in place');
        }
        await sleep(retryDelayMs, stopSignal.signal);
      }
    }
  };

  const watch = async (current: ConsumerMessages): Promise<void> => {
    for await (const status of current.status()) {
      if (
        status.type === 'heartbeats_missed' ||
        status.type === 'consumer_not_found' ||
        status.type === 'stream_not_found' ||
        status.type === 'consumer_deleted'
      ) {
        logger.warn({ status }, 'consumer trouble');
      }
    }
  };

  // Pulls until stopped; a failure (the consumer gone, the connection down) is logged and the
  // pull restarted, never thrown out of the loop.
  const loop = async (): Promise<void> => {
    while (!stopSignal.signal.aborted && !context.nc.isClosed()) {
      try {
        const consumer = await context.js.consumers.get(context.streamName, durable);
        const current = await consumer.consume({ max_messages: PULL_BATCH });
        messages = current;
        if (stopSignal.signal.aborted) {
          // Not awaited: close() resolves through the iterator, which nobody will run now.
          void current.close();
          break;
        }
        watch(current).catch(() => undefined);
        for await (const msg of current) {
          // Stopping: what was pulled but not started goes back for another process.
          if (stopSignal.signal.aborted) msg.nak();
          else await handleOne(msg);
        }
      } catch (error) {
        if (stopSignal.signal.aborted) break;
        logger.error({ err: error }, 'consuming failed; restarting');
      }
      await sleep(RESTART_DELAY_MS, stopSignal.signal);
    }
  };
  const done = loop().finally(() => counts.end());

  return {
    stop: async () => {
      if (stopSignal.signal.aborted) return done;
      stopSignal.abort();
      // The loop hands what is left of the pulled batch back (nak) and then ends.
      void messages?.close();
      await done;
    },
  };
}

function consumerConfig(
  context: ConsumerContext,
  options: ConsumeOptions,
  types: EventType[],
  maxDeliver: number,
): Partial<ConsumerConfig> & { durable_name: string } {
  const filter = consumerFilter(context.subjectPrefix, types, context.nc.info?.version ?? '0.0.0');
  return {
    durable_name: options.durable,
    ack_policy: AckPolicy.Explicit,
    // By default a new durable starts at the oldest retained event: nothing published before
    // its first start is missed, and handlers are idempotent.
    deliver_policy: options.deliver === 'new' ? DeliverPolicy.New : DeliverPolicy.All,
    replay_policy: ReplayPolicy.Instant,
    ack_wait: nanos(ACK_WAIT_MS),
    max_deliver: maxDeliver,
    max_ack_pending: 1_000,
    ...(options.inactiveThresholdMs === undefined
      ? {}
      : { inactive_threshold: nanos(options.inactiveThresholdMs) }),
    ...filter,
  };
}

/** Creates the durable, or brings an existing one (another process's) to this config. */
async function ensureConsumer(
  context: ConsumerContext,
  config: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  const { jsm, streamName } = context;
  const exists = await jsm.consumers.info(streamName, config.durable_name).then(
    () => true,
    (error: unknown) => {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) {
        return false;
      }
      throw error;
    },
  );
  if (!exists) {
    try {
      await jsm.consumers.add(streamName, config);
      return;
    } catch (error) {
      // Another process may have created it a moment ago: fall through to updating it.
      if (!(error instanceof JetStreamApiError)) throw error;
    }
  }
  const { ack_wait, max_deliver, max_ack_pending, inactive_threshold } = config;
  const { filter_subject, filter_subjects } = config;
  await jsm.consumers.update(streamName, config.durable_name, {
    ack_wait,
    max_deliver,
    max_ack_pending,
    inactive_threshold,
    filter_subject,
    filter_subjects,
  });
}

/**
 * The subjects of these types for every tenant, in both forms (eventFilterSubjects). Setting
 * both fields lets an update replace a filter of the other kind in place.
 */
export function consumerFilter(
  prefix: string,
  types: EventType[],
  serverVersion: string,
): Pick<ConsumerConfig, 'filter_subject' | 'filter_subjects'> {
  const [major = 0, minor = 0] = serverVersion.split('.').map(Number);
  if (major > 2 || (major === 2 && minor >= 10)) {
    return {
      filter_subject: undefined,
      filter_subjects: types.flatMap((type) => eventFilterSubjects(prefix, type)),
    };
  }
  // nats-server 2.9 (Debian 12's) filters on one subject only: take all, skip the rest.
  return { filter_subject: `${prefix}.>`, filter_subjects: undefined };
}

/** From the decoded event: reading the message's headers again would parse them on every event. */
function consumerSpanAttributes(durable: string, event: ReceivedEvent) {
  return {
    'messaging.system': 'nats',
    'messaging.operation.type': 'process',
    'messaging.destination.name': event.subject,
    'messaging.consumer.group.name': durable,
    // The event id is its Nats-Msg-Id.
    'messaging.message.id': event.message.eventId,
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}
