import type { ReceivedEvent } from '@assist-tee/events';
import type { ExecutionDeps } from '../deps.js';
import { environmentDeleted } from '../recorded-run.js';

/**
 * What this instance does about environments coming and going:
 * - environment.created: one warm sandbox right away, so the first execution is warm too;
 * - environment.deleted: its warm sandboxes are removed, its executions are stopped (their
 *   sandboxes removed; they end as SANDBOX_ERROR EnvironmentDeleted), and its sessions end
 *   (ENVIRONMENT_DELETED).
 * Doing either twice does no harm, so a redelivered event is fine.
 */
export function onEnvironmentEvent(
  deps: Pick<ExecutionDeps, 'work' | 'pool' | 'logger' | 'sessions'>,
) {
  return (event: ReceivedEvent): void => {
    if (event.type === 'environment.created' && event.message.environment !== undefined) {
      deps.pool.prewarm(event.message.environment);
    } else if (event.type === 'environment.deleted') {
      const { environmentId } = event.message;
      const drained = deps.pool.drain(environmentId);
      const stopped = deps.work.abort(environmentId, environmentDeleted());
      const sessions = deps.sessions.endForEnvironment(environmentId);
      if (stopped + drained + sessions > 0) {
        deps.logger.info(
          { environmentId, stopped, drained, sessions },
          'an environment was deleted',
        );
      }
    }
  };
}
