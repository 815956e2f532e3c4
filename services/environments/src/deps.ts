import type { Config } from '@assist-tee/config';
import type { Database } from '@assist-tee/db';
import type { EventBus } from '@assist-tee/events';
import type { Logger } from '@assist-tee/logger';
import type { RuntimeImage } from '@assist-tee/runtime-deno';
import type { SandboxDriver } from '@assist-tee/sandbox';

/** What the EnvironmentService's handlers work with. */
export interface EnvironmentsDeps {
  config: Config;
  logger: Logger;
  db: Database;
  bus: EventBus;
  sandbox: SandboxDriver;
  runtime: RuntimeImage;
}
