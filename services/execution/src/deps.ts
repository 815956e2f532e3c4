import type { Client } from '@connectrpc/connect';
import type { Config } from '@assist-tee/config';
import type { Database } from '@assist-tee/db';
import type { EventBus } from '@assist-tee/events';
import type { Logger } from '@assist-tee/logger';
import type { Outbox } from '@assist-tee/outbox';
import type { EnvironmentService } from '@assist-tee/proto';
import type { SandboxRuntimes } from '@assist-tee/runtime-core';
import type { SandboxDriver } from '@assist-tee/sandbox';
import type {
  ConcurrencyQuota,
  Idempotency,
  InFlight,
  InstanceLimit,
  SandboxMemory,
} from '@assist-tee/server';
import type { Egress } from './egress.js';
import type { ExecutionMetrics } from './execution-metrics.js';
import type { ExecutionWriter } from './execution-writer.js';
import type { SandboxMetrics } from './sandbox-metrics.js';
import type { Sessions } from './sessions.js';
import type { WarmPool } from './warm-pool.js';

/** What the ExecutionService's handlers work with. */
export interface ExecutionDeps {
  config: Config;
  logger: Logger;
  db: Database;
  bus: EventBus;
  sandbox: SandboxDriver;
  /** Events are written here with the state they describe, and relayed to JetStream. */
  outbox: Outbox;
  /** Finished executions and their events, many in one statement. */
  writer: ExecutionWriter;
  /** Executions and the pool, in the process's Prometheus registry. */
  metrics: ExecutionMetrics;
  /** Sandbox start, run and removal durations, in the same registry. */
  sandboxMetrics: SandboxMetrics;
  /** Every runtime an environment can use, by name. */
  runtimes: SandboxRuntimes;
  /** The egress proxy that sandboxes with allow_net reach the listed hosts through. */
  egress: Egress;
  /** Sandboxes started ahead of demand; it also removes used sandboxes in the background. */
  pool: WarmPool;
  /** The executions running now, keyed by environment id. */
  work: InFlight;
  /** request_id keys of Execute and ExecuteStream. */
  idempotency: Idempotency;
  /** Executions each tenant may run at once (TEE_QUOTA_CONCURRENT_EXECUTIONS). */
  executionQuota: ConcurrencyQuota;
  /** Executions this instance runs at once, over all callers (TEE_MAX_RUNNING_EXECUTIONS). */
  runningExecutions: InstanceLimit;
  /** The memory of this process's sandboxes, running and warm (TEE_SANDBOX_MEMORY_MB). */
  memory: SandboxMemory;
  /** Insecure development settings in force (no gVisor, no API keys): logged with each run. */
  warnings: readonly string[];
  /** The EnvironmentService: the execution service never reads the environments table. */
  environments: Client<typeof EnvironmentService>;
  /** The sessions whose sandboxes this instance holds. */
  sessions: Sessions;
}

/** What everything but the sessions themselves works with. */
export type CoreDeps = Omit<ExecutionDeps, 'sessions'>;
