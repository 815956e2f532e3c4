import type { QueryResult } from '@mikro-orm/core';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import type { ReceivedEvent } from '@assist-tee/events';
import type { EnvironmentsDeps } from '../deps.js';

/**
 * Keeps `execution_count` and `last_used_at` from execution.finished. Idempotent by event id:
 * the id is recorded in the same statement as the update, so a redelivered event (a crash
 * before the ack) changes nothing the second time.
 */
export function recordExecutionFinished(deps: Pick<EnvironmentsDeps, 'db' | 'logger'>) {
  return async (event: ReceivedEvent): Promise<void> => {
    if (event.type !== 'execution.finished') return;
    const execution = event.message.execution;
    if (execution === undefined) return;
    const finishedAt = execution.finishTime ? timestampDate(execution.finishTime) : new Date();
    // One statement, so one transaction: the claim and the update commit together.
    const updated = await deps.db.em().execute<QueryResult>(
      `with "claimed" as (
         insert into "environments"."processed_event" ("event_id", "processed_at")
         values (?, now()) on conflict do nothing returning "event_id")
       update "environments"."environment"
       set "execution_count" = "execution_count" + 1,
           "last_used_at" = greatest("last_used_at", ?)
       where "id" = ? and exists (select 1 from "claimed")`,
      [event.message.eventId, finishedAt, execution.environmentId],
      'run',
    );
    if (updated.affectedRows === 0) {
      deps.logger.debug(
        { eventId: event.message.eventId },
        'event already applied, or its environment is gone',
      );
    }
  };
}
