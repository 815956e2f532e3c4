import type { Config } from '@assist-tee/config';
import type { Database } from '@assist-tee/db';
import type { EventBus } from '@assist-tee/events';
import type { Logger } from '@assist-tee/logger';
import type { Outbox } from '@assist-tee/outbox';
import type { SandboxRuntimes } from '@assist-tee/runtime-core';
import type { SandboxDriver } from '@assist-tee/sandbox';
import type {
  ConcurrencyQuota,
  Idempotency,
  InFlight,
  InstanceLimit,
  SandboxMemory,
} from '@assist-tee/server';
import type { SetupMetrics } from './setup/setup-metrics.js';
import type { SetupProgress } from './setup/progress.js';

/** What the EnvironmentService's handlers work with. */
export interface EnvironmentsDeps {
  config: Config;
  logger: Logger;
  db: Database;
  bus: EventBus;
  sandbox: SandboxDriver;
  /** Events are written here with the state they describe, and relayed to JetStream. */
  outbox: Outbox;
  /** Every runtime an environment can use, by name. */
  runtimes: SandboxRuntimes;
  /** The setups running now. */
  work: InFlight;
  /** request_id keys of CreateEnvironment and DeleteEnvironment. */
  idempotency: Idempotency;
  /** The phases and output of the setups this instance runs, for WatchEnvironment. */
  setupProgress: SetupProgress;
  /** Setups each tenant may run at once (TEE_QUOTA_CONCURRENT_SETUPS). */
  setupQuota: ConcurrencyQuota;
  /** Setups this instance runs at once, over all tenants (TEE_MAX_RUNNING_SETUPS). */
  runningSetups: InstanceLimit;
  /** The memory of this process's sandboxes; an install holds its share while it runs. */
  memory: SandboxMemory;
  /** Setups and dependency installs, in the process's metrics. */
  metrics: SetupMetrics;
  /** Insecure development settings in force (no gVisor, no API keys): logged with each setup. */
  warnings: readonly string[];
}
