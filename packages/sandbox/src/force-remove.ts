import type Docker from 'dockerode';
import { dockerStatus } from './errors.js';

/**
 * Force-removes a container: the engine kills it, waits and deletes it in one call. A missing
 * container counts as removed; 'busy' when another removal of it is in progress (409).
 */
export async function forceRemove(container: Docker.Container): Promise<'removed' | 'busy'> {
  for (let attempt = 1; ; attempt++) {
    try {
      await container.remove({ force: true, v: false });
      return 'removed';
    } catch (error) {
      const status = dockerStatus(error);
      if (status === 404) return 'removed';
      if (status === 409) return 'busy';
      // The container exited while the engine was killing it ("Could not kill running
      // container …, is not running"): it has stopped, so removing it again succeeds.
      if (attempt === 1 && status === 500 && String(error).includes('is not running')) continue;
      throw error;
    }
  }
}
