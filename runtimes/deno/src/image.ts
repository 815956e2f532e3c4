import type { Logger } from '@assist-tee/logger';
import { buildRuntimeImage } from '@assist-tee/runtime-core';
import type { SandboxDriver } from '@assist-tee/sandbox';
import { denoImage } from './runtime.js';

/** Builds the Deno image unless it exists, and returns its tag. */
export function buildDenoImage(driver: SandboxDriver, logger: Logger): Promise<string> {
  return buildRuntimeImage(driver, logger, denoImage);
}
