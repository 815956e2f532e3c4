import type { Client } from '@connectrpc/connect';
import type { Config } from '@assist-tee/config';
import type { Database } from '@assist-tee/db';
import type { EventBus } from '@assist-tee/events';
import type { Logger } from '@assist-tee/logger';
import type { EnvironmentService } from '@assist-tee/proto';
import type { RuntimeImage } from '@assist-tee/runtime-deno';
import type { SandboxDriver } from '@assist-tee/sandbox';

/** What the ExecutionService's handlers work with. */
export interface ExecutionDeps {
  config: Config;
  logger: Logger;
  db: Database;
  bus: EventBus;
  sandbox: SandboxDriver;
  runtime: RuntimeImage;
  /** The EnvironmentService: the execution service never reads the environments table. */
  environments: Client<typeof EnvironmentService>;
}
