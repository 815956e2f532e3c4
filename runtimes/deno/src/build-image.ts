// Builds the Deno runtime image (`npm run image`) and prints its tag.
import { createLogger } from '@assist-tee/logger';
import { createDockerClient, SandboxDriver } from '@assist-tee/sandbox';
import { buildDenoImage } from './image.js';

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
  const tag = await buildDenoImage(driver, logger);
  process.stdout.write(`${tag}\n`);
} catch (error) {
  logger.error({ err: error }, 'building the deno runtime image failed');
  process.exitCode = 1;
}
