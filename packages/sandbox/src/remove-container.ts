import { forceRemove } from './force-remove.js';
import type { DriverContext } from './context.js';

/** Force-removes a container by id; a missing one, or one already being removed, is fine. */
export async function removeContainer(
  { docker, logger }: Pick<DriverContext, 'docker' | 'logger'>,
  id: string,
): Promise<void> {
  if ((await forceRemove(docker.getContainer(id))) === 'removed') {
    logger.debug({ containerId: id }, 'container removed');
  }
}
