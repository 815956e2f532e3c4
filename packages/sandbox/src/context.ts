import type Docker from 'dockerode';
import type { Logger } from '@assist-tee/logger';
import type { SandboxLabels } from './labels.js';

/** What the driver's per-job modules share: the engine, the logger and the labelling. */
export interface DriverContext {
  docker: Docker;
  logger: Logger;
  /** The labels with this driver's deployment added. */
  labelled: <T extends Partial<SandboxLabels>>(labels: T) => T;
}

export function driverContext(options: {
  docker: Docker;
  logger: Logger;
  deployment?: string;
}): DriverContext {
  const { docker, logger, deployment } = options;
  return {
    docker,
    logger,
    labelled: (labels) => (deployment === undefined ? labels : { ...labels, deployment }),
  };
}
