import type { Config } from '@assist-tee/config';
import type { Database } from '@assist-tee/db';
import type { EventBus } from '@assist-tee/events';
import type { Logger } from '@assist-tee/logger';
import type { SandboxRuntimes } from '@assist-tee/runtime-core';
import type { SandboxDriver } from '@assist-tee/sandbox';

/** What the EnvironmentService's handlers work with. */
export interface EnvironmentsDeps {
  config: Config;
  logger: Logger;
  db: Database;
  bus: EventBus;
  sandbox: SandboxDriver;
  /** Every runtime an environment can use, by name. */
  runtimes: SandboxRuntimes;
}
