import { LockMode } from '@mikro-orm/core';
import type { Database, OutboxEntityClass } from '@assist-tee/db';
import type { EventBus, EventMessage, EventType } from '@assist-tee/events';
import { encodeEvent } from '@assist-tee/events';
import type { Logger } from '@assist-tee/logger';
import { activeTraceparent } from '@assist-tee/tracing';
import type { Registry } from 'prom-client';
import { NO_OUTBOX_COUNTS, type OutboxBacklog, OutboxMetrics } from './outbox-metrics.js';

type EntityManager = ReturnType<Database['em']>;

export interface OutboxOptions {
  db: Database;
  /** The service's outbox entity (in its own schema). */
  entity: OutboxEntityClass;
  bus: EventBus;
  logger: Logger;
  /** How often pending events are retried while publishing fails (NATS down). */
  retryMs?: number;
  /** Published rows older than this are deleted. */
  keepPublishedMs?: number;
  /** The process's metrics: what this outbox publishes, and its backlog at each scrape. */
  registry?: Registry;
}

/** An event with its type, as the outbox writes and publishes it. */
export interface OutboxEvent<T extends EventType = EventType> {
  type: T;
  message: EventMessage<T>;
  /** The trace of the change it reports (outboxRow's); by default the active one. */
  traceparent?: string | null;
}

/** An outbox row's values, for a statement that inserts it with the state it describes. */
export interface OutboxRow {
  eventId: string;
  type: string;
  payload: Buffer;
  createdAt: Date;
  publishedAt: null;
  traceparent: string | null;
}

export interface Outbox {
  /**
   * Adds the event to `em`'s unit of work: the flush that writes the state it describes writes
   * it too, in the same transaction. Call publishPending() after that flush.
   */
  add<T extends EventType>(em: EntityManager, type: T, message: EventMessage<T>): void;
  /** add(), then flush `em` (state and event in one transaction), then publishCommitted(). */
  flushWith<T extends EventType>(
    em: EntityManager,
    type: T,
    message: EventMessage<T>,
  ): Promise<void>;
  /**
   * Publishes events whose rows have just committed, at once, without reading them back, and
   * marks them published; one that fails waits for the relay. Returns at once.
   */
  publishCommitted(events: readonly OutboxEvent[]): void;
  /** Asks the relay to publish what is pending now; returns at once. */
  publishPending(): void;
  /** Waits until nothing is pending (for tests and shutdown); false when it timed out. */
  drained(timeoutMs: number): Promise<boolean>;
  /** Stops the relay after its current pass; pending events stay for the next start. */
  close(): Promise<void>;
}

const BATCH = 100;
const PRUNE_EVERY_MS = 60_000;
const MARK_DELAY_MS = 50;

/**
 * The row that carries `message` in the outbox table, with the trace of the change (by default
 * the active one): the relay sends it as the event's traceparent, so a consumer joins that trace
 * however late the event goes out.
 */
export function outboxRow<T extends EventType>(
  type: T,
  message: EventMessage<T>,
  traceparent: string | null = activeTraceparent() ?? null,
): OutboxRow {
  return {
    eventId: message.eventId,
    type,
    payload: Buffer.from(encodeEvent(type, message)),
    createdAt: new Date(),
    publishedAt: null,
    traceparent,
  };
}

/**
 * The transactional outbox and its relay. Events are written with the state they describe and
 * published to JetStream afterwards, with their event id as Nats-Msg-Id: a crash between
 * publish and mark re-publishes, and JetStream drops the duplicate. A writer that knows its
 * rows committed hands their events over (publishCommitted), and they go out at once, in the
 * order handed over, without the relay reading them back; whatever else is pending (written
 * inside a caller's transaction, failed to publish, left by a crash) the relay publishes oldest
 * first, a batch at a time. An event whose publish failed goes out after events that followed
 * it. While NATS is down API calls still succeed; their events wait here and go out once it
 * is back. Replicas share the table: the relay claims a batch with FOR UPDATE SKIP LOCKED.
 */
export function startOutbox(options: OutboxOptions): Outbox {
  const { db, entity, bus, logger } = options;
  const retryMs = options.retryMs ?? 1_000;
  const keepPublishedMs = options.keepPublishedMs ?? 24 * 60 * 60_000;
  let stopped = false;
  let wake: (() => void) | undefined;
  let requested = true;
  let lastPrune = 0;
  const meta = db.orm.getMetadata(entity);
  const table = `"${meta.schema}"."${meta.tableName}"`;
  const counts = options.registry
    ? OutboxMetrics.of(options.registry).track(meta.schema ?? meta.tableName, backlog)
    : NO_OUTBOX_COUNTS;
  /** Event ids published by publishCommitted and waiting to be marked, in one statement. */
  let toMark: string[] = [];
  let marking: Promise<void> | undefined;
  /** publishCommitted's work in flight: close() waits for it. */
  const committed = new Set<Promise<void>>();

  /** Publishes one batch; returns how many were published and whether some are still pending. */
  async function relayBatch(): Promise<{ published: number; more: boolean }> {
    return db.em().transactional(async (em) => {
      // A mark lost in a database crash only re-publishes, and JetStream drops the duplicate:
      // no need to wait for the disk, and the executions' own commits do not queue behind it.
      await em.getConnection().execute('set local synchronous_commit = off');
      const rows = await em.find(
        entity,
        { publishedAt: null },
        {
          orderBy: { createdAt: 'asc' },
          limit: BATCH,
          lockMode: LockMode.PESSIMISTIC_PARTIAL_WRITE,
        },
      );
      const sent = await sendAll(rows, (row) =>
        bus.publishEncoded(row.type as EventType, row.payload, row.traceparent),
      );
      for (const row of sent) row.publishedAt = new Date();
      return { published: sent.length, more: rows.length === BATCH || sent.length < rows.length };
    });
  }

  /**
   * Publishes all at once: sent in order on the one connection, JetStream stores them in that
   * order. Returns those that went out; the rest wait for the relay's retry (and so go out after
   * events that followed them).
   */
  async function sendAll<T extends { type: string }>(
    items: readonly T[],
    send: (item: T) => Promise<void>,
  ): Promise<T[]> {
    const results = await Promise.allSettled(items.map(send));
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') counts.published(items[i]!.type);
      else counts.failed();
    });
    const failed = results.filter((result) => result.status === 'rejected');
    if (failed.length > 0) {
      logger.warn({ err: failed[0]!.reason, failed: failed.length }, 'publish failed');
      requested = true;
    }
    return items.filter((_, i) => results[i]!.status === 'fulfilled');
  }

  /**
   * Marks what publishCommitted published, a moment later, so that one statement marks the
   * events of many calls; calls that come while a mark is waiting or running join it.
   */
  function mark(eventIds: string[]): Promise<void> {
    if (eventIds.length === 0) return Promise.resolve();
    toMark.push(...eventIds);
    marking ??= (async () => {
      await new Promise((resolve) => setTimeout(resolve, MARK_DELAY_MS));
      while (toMark.length > 0) {
        const batch = toMark;
        toMark = [];
        // Unmarked, an event is only published again, and JetStream drops the duplicate.
        // One parameter, an array literal of the (uuid) ids: the ORM's `$in` would convert
        // every id on its own, and it spreads a JavaScript array into a list.
        await db
          .em()
          .execute(`update ${table} set "published_at" = now() where "event_id" = any(?::uuid[])`, [
            `{${batch.join(',')}}`,
          ])
          .catch((error: unknown) => logger.warn({ err: error }, 'marking events failed'));
      }
      marking = undefined;
    })();
    return marking;
  }

  async function publishNow(events: readonly OutboxEvent[]): Promise<void> {
    const sent = await sendAll(events, (event) =>
      bus.publish(event.type, event.message, event.traceparent),
    );
    await mark(sent.map((event) => event.message.eventId));
  }

  /** For the metrics: one query, on the index of unpublished rows. */
  async function backlog(): Promise<OutboxBacklog> {
    const [row] = await db.em().execute<{ events: number; age: number }[]>(
      `select count(*)::float8 as events,
        coalesce(extract(epoch from now() - min("created_at")), 0)::float8 as age
        from ${table} where "published_at" is null`,
    );
    return { events: row?.events ?? 0, oldestAgeSeconds: Math.max(0, row?.age ?? 0) };
  }

  async function prune(): Promise<void> {
    if (Date.now() - lastPrune < PRUNE_EVERY_MS) return;
    lastPrune = Date.now();
    const before = new Date(Date.now() - keepPublishedMs);
    await db.em().nativeDelete(entity, { publishedAt: { $lt: before } });
  }

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  const loop = (async () => {
    while (!stopped) {
      if (!requested) {
        await sleep(retryMs);
        await prune().catch((error: unknown) => logger.warn({ err: error }, 'pruning failed'));
        continue;
      }
      requested = false;
      try {
        const { published, more } = await relayBatch();
        if (published > 0) logger.debug({ published }, 'events published');
        if (more) {
          requested = true;
          if (published === 0) await sleep(retryMs);
        }
      } catch (error) {
        logger.warn({ err: error }, 'outbox relay pass failed');
        requested = true;
        await sleep(retryMs);
      }
    }
  })();

  return {
    add(em, type, message) {
      em.create(entity, outboxRow(type, message));
    },
    async flushWith(em, type, message) {
      this.add(em, type, message);
      await em.flush();
      this.publishCommitted([{ type, message }]);
    },
    publishCommitted(events) {
      if (events.length === 0) return;
      const work = publishNow(events).finally(() => committed.delete(work));
      committed.add(work);
    },
    publishPending() {
      requested = true;
      wake?.();
    },
    async drained(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const pending = await db.em().count(entity, { publishedAt: null });
        if (pending === 0) return true;
        this.publishPending();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return false;
    },
    async close() {
      stopped = true;
      wake?.();
      await Promise.all([loop, ...committed]);
      // A last pass for the events of the work that just ended; what fails waits for a replica
      // or the next start.
      await relayBatch().catch((error: unknown) => {
        logger.warn({ err: error }, 'last outbox pass failed');
      });
      counts.end();
    },
  };
}
