import { createLogger } from '@assist-tee/logger';
import { createDockerClient, SandboxDriver } from '@assist-tee/sandbox';
import { buildRuntimeImage, type RuntimeImageDefinition } from './image.js';

/**
 * The body of a runtime's `npm run image`: builds its image into the local engine unless it
 * exists, and prints the tag. Reads the same TEE_* variables as the services.
 */
export async function runBuildImageCommand(definition: RuntimeImageDefinition): Promise<void> {
  const logger = createLogger(
    { level: process.env.TEE_LOG_LEVEL ?? 'info' },
    { name: 'build-image' },
  );
  const driver = new SandboxDriver({
    docker: createDockerClient({
      socketPath: process.env.TEE_DOCKER_SOCKET ?? '/var/run/docker.sock',
    }),
    logger,
    runtime: process.env.TEE_SANDBOX_RUNTIME ?? 'runsc',
  });
  try {
    await driver.ping();
    const tag = await buildRuntimeImage(driver, logger, definition);
    process.stdout.write(`${tag}\n`);
  } catch (error) {
    logger.error({ err: error }, `building the ${definition.runtime} runtime image failed`);
    process.exitCode = 1;
  }
}
