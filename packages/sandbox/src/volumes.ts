import type Docker from 'dockerode';
import { isNotFound } from './errors.js';
import { LABEL_PREFIX, toDockerLabels, type SandboxLabels } from './labels.js';
import type { DriverContext } from './context.js';

/** The volume a sandbox or a write needs does not exist (e.g. its environment was deleted). */
export class VolumeNotFoundError extends Error {
  override readonly name = 'VolumeNotFoundError';
  constructor(readonly volume: string) {
    super(`volume ${volume} does not exist`);
  }
}

export async function createVolume(
  { docker, logger, labelled }: DriverContext,
  name: string,
  labels: SandboxLabels,
): Promise<void> {
  await docker.createVolume({ Name: name, Labels: toDockerLabels(labelled(labels)) });
  logger.debug({ volume: name }, 'volume created');
}

/** Removes a volume; a missing one is fine. */
export async function removeVolume(
  { docker, logger }: Pick<DriverContext, 'docker' | 'logger'>,
  name: string,
): Promise<void> {
  try {
    await docker.getVolume(name).remove();
    logger.debug({ volume: name }, 'volume removed');
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
}

/**
 * Docker silently creates a missing named volume on container create: an environment whose
 * volume is gone must fail here, not run with an empty /code.
 */
export async function requireVolume(docker: Docker, name: string): Promise<void> {
  try {
    await docker.getVolume(name).inspect();
  } catch (error) {
    if (isNotFound(error)) throw new VolumeNotFoundError(name);
    throw error;
  }
}

/** Whether the volume is one Docker made in place of a missing one (see volumeMount). */
export async function isRecreatedVolume(docker: Docker, name: string): Promise<boolean> {
  const { Labels } = await docker.getVolume(name).inspect();
  return Labels?.[RECREATED_LABEL] === 'true';
}

/**
 * Should the volume vanish between the check and the create, Docker creates an empty one: it is
 * labelled, and marked so that start() can tell it from the real one.
 */
const RECREATED_LABEL = `${LABEL_PREFIX}.recreated`;

export function volumeMount(
  name: string,
  target: string,
  readOnly: boolean,
  labels: SandboxLabels,
) {
  return {
    Type: 'volume' as const,
    Source: name,
    Target: target,
    ReadOnly: readOnly,
    VolumeOptions: {
      NoCopy: true,
      Labels: { ...toDockerLabels(labels), [RECREATED_LABEL]: 'true' },
      DriverConfig: { Name: 'local', Options: {} },
    },
  };
}
