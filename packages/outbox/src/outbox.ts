import { LockMode } from '@mikro-orm/core';
import type { Database, OutboxEntityClass } from '@assist-tee/db';
import type { EventBus, EventMessage, EventType } from '@assist-tee/events';
import { encodeEvent } from '@assist-tee/events';
import type { Logger } from '@assist-tee/logger';

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
}

export interface Outbox {
  /**
   * Adds the event to `em`'s unit of work: the flush that writes the state it describes writes
   * it too, in the same transaction. Call publishPending() after that flush.
   */
  add<T extends EventType>(em: EntityManager, type: T, message: EventMessage<T>): void;
  /** add(), then flush `em` (state and event in one transaction), then publishPending(). */
  flushWith<T extends EventType>(
    em: EntityManager,
    type: T,
    message: EventMessage<T>,
  ): Promise<void>;
  /** Asks the relay to publish what is pending now; returns at once. */
  publishPending(): void;
  /** Waits until nothing is pending (for tests and shutdown); false when it timed out. */
  drained(timeoutMs: number): Promise<boolean>;
  /** Stops the relay after its current pass; pending events stay for the next start. */
  close(): Promise<void>;
}

const BATCH = 100;
const PRUNE_EVERY_MS = 60_000;

/**
 * The transactional outbox and its relay. Events are written with the state they describe and
 * published to JetStream afterwards, oldest first, with their event id as Nats-Msg-Id: a crash
 * between publish and mark re-publishes, and JetStream drops the duplicate. While NATS is down
 * API calls still succeed; their events wait here and go out once it is back. Replicas share
 * the table: a batch is claimed with FOR UPDATE SKIP LOCKED.
 */
export function startOutbox(options: OutboxOptions): Outbox {
  const { db, entity, bus, logger } = options;
  const retryMs = options.retryMs ?? 1_000;
  const keepPublishedMs = options.keepPublishedMs ?? 24 * 60 * 60_000;
  let stopped = false;
  let wake: (() => void) | undefined;
  let requested = true;
  let lastPrune = 0;

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
      let published = 0;
      for (const row of rows) {
        try {
          await bus.publishEncoded(row.type as EventType, row.payload);
        } catch (error) {
          // Keep what went out; the rest waits for the retry.
          logger.warn({ err: error, eventId: row.eventId, type: row.type }, 'publish failed');
          return { published, more: true };
        }
        row.publishedAt = new Date();
        published += 1;
      }
      return { published, more: rows.length === BATCH };
    });
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
        await prune();
      } catch (error) {
        logger.warn({ err: error }, 'outbox relay pass failed');
        requested = true;
        await sleep(retryMs);
      }
    }
  })();

  return {
    add(em, type, message) {
      em.create(entity, {
        eventId: message.eventId,
        type,
        payload: Buffer.from(encodeEvent(type, message)),
        createdAt: new Date(),
        publishedAt: null,
      });
    },
    async flushWith(em, type, message) {
      this.add(em, type, message);
      await em.flush();
      this.publishPending();
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
      await loop;
      // A last pass for the events of the work that just ended; what fails waits for a replica
      // or the next start.
      await relayBatch().catch((error: unknown) => {
        logger.warn({ err: error }, 'last outbox pass failed');
      });
    },
  };
}
