import { type Database, ExecutionEntity, ExecutionOutboxEntity } from '@assist-tee/db';
import { type Outbox, type OutboxEvent, type OutboxRow, outboxRow } from '@assist-tee/outbox';
import { activeTraceparent } from '@assist-tee/tracing';

/** The most executions one statement writes. */
const MAX_BATCH = 64;

interface PendingWrite {
  row: ExecutionEntity;
  events: OutboxEvent[];
  written: PromiseWithResolvers<void>;
}

/**
 * Writes finished executions with their events, many in one statement (a group commit): the
 * first at once, and those that finish while a write is in flight together in the next. So a
 * call waits for one round trip, and under load the database sees one statement for many calls.
 * A statement that fails fails each of its calls, none of which committed anything.
 */
export class ExecutionWriter {
  private queue: PendingWrite[] = [];
  private writing = false;

  constructor(private readonly deps: { db: Database; outbox: Pick<Outbox, 'publishCommitted'> }) {}

  /**
   * Resolves once the row and its events are committed; the events are then published. The
   * events carry the caller's trace: the statement that writes them may be another call's.
   */
  write(row: ExecutionEntity, events: OutboxEvent[]): Promise<void> {
    const written = Promise.withResolvers<void>();
    const traceparent = activeTraceparent() ?? null;
    const traced = events.map((event) => ({ traceparent, ...event }));
    this.queue.push({ row, events: traced, written });
    if (!this.writing) void this.drain();
    return written.promise;
  }

  private async drain(): Promise<void> {
    this.writing = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      const events = batch.flatMap((pending) => pending.events);
      try {
        await this.insert(
          batch.map((pending) => pending.row),
          events.map((event) => outboxRow(event.type, event.message, event.traceparent)),
        );
      } catch (error) {
        for (const pending of batch) pending.written.reject(error);
        continue;
      }
      this.deps.outbox.publishCommitted(events);
      for (const pending of batch) pending.written.resolve();
    }
    this.writing = false;
  }

  /**
   * One statement, so one transaction (Postgres runs a data-modifying CTE with its statement):
   * the rows and their events commit together or not at all.
   */
  private async insert(rows: ExecutionEntity[], events: OutboxRow[]): Promise<void> {
    const em = this.deps.db.em();
    const executions = em.createQueryBuilder(ExecutionEntity).insert(rows);
    if (events.length === 0) {
      await executions.execute();
      return;
    }
    await em
      .createQueryBuilder(ExecutionOutboxEntity)
      .insert(events)
      .with('executions', executions.getNativeQuery())
      .execute();
  }
}
