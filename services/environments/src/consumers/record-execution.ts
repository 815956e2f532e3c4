import { timestampDate } from '@bufbuild/protobuf/wkt';
import type { ReceivedEvent } from '@assist-tee/events';
import type { EnvironmentsDeps } from '../deps.js';

/**
 * Keeps `execution_count` and `last_used_at` from execution.finished. Idempotent by event id:
 * the id is recorded in the same transaction as the update, so a redelivered event (a crash
 * before the ack) changes nothing the second time.
 */
export function recordExecutionFinished(deps: Pick<EnvironmentsDeps, 'db' | 'logger'>) {
  return async (event: ReceivedEvent): Promise<void> => {
    if (event.type !== 'execution.finished') return;
    const execution = event.message.execution;
    if (execution === undefined) return;
    const finishedAt = execution.finishTime ? timestampDate(execution.finishTime) : new Date();
    await deps.db.em().transactional(async (em) => {
      // em.execute runs inside the transaction em belongs to.
      const claimed = await em.execute<{ event_id: string }[]>(
        `insert into "environments"."processed_event" ("event_id", "processed_at")
         values (?, now()) on conflict do nothing returning "event_id"`,
        [event.message.eventId],
        'all',
      );
      if (claimed.length === 0) {
        deps.logger.debug({ eventId: event.message.eventId }, 'event already applied');
        return;
      }
      await em.execute(
        `update "environments"."environment"
         set "execution_count" = "execution_count" + 1,
             "last_used_at" = greatest("last_used_at", ?)
         where "id" = ?`,
        [finishedAt, execution.environmentId],
        'run',
      );
    });
  };
}
