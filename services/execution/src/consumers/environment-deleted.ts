import type { ReceivedEvent } from '@assist-tee/events';
import type { ExecutionDeps } from '../deps.js';
import { environmentDeleted } from '../execute.js';

/**
 * Stops this instance's executions on an environment that was deleted: their sandboxes are
 * removed and they end as SANDBOX_ERROR (EnvironmentDeleted). Stopping what is already stopped
 * does nothing, so a redelivered event is harmless.
 */
export function stopExecutionsOfDeleted(deps: Pick<ExecutionDeps, 'work' | 'logger'>) {
  return (event: ReceivedEvent): void => {
    if (event.type !== 'environment.deleted') return;
    const { environmentId } = event.message;
    const stopped = deps.work.abort(environmentId, environmentDeleted());
    if (stopped > 0) {
      deps.logger.info({ environmentId, stopped }, 'stopped executions of a deleted environment');
    }
  };
}
