import type { Logger } from '@assist-tee/logger';
import { buildRuntimeImage } from '@assist-tee/runtime-core';
import type { SandboxDriver } from '@assist-tee/sandbox';
import { bunImage } from './runtime.js';

/** Builds the Bun image unless it exists, and returns its tag. */
export function buildBunImage(driver: SandboxDriver, logger: Logger): Promise<string> {
  return buildRuntimeImage(driver, logger, bunImage);
}
