import {
  type AssistTeeClient,
  type AssistTeeClientOptions,
  createAssistTeeClient,
} from '@assist-tee/client';
import { loadConfig, type Config } from '@assist-tee/config';
import { createLogger } from '@assist-tee/logger';
import { labelFilter } from '@assist-tee/sandbox';
import { startProcess, type RunningProcess } from '@assist-tee/server';
import { createAllServices } from '@assist-tee/standalone';
import {
  createTestDatabase,
  deleteTestStream,
  removeLabelled,
  testSubjectPrefix,
  uniqueSuffix,
} from '@assist-tee/testing';
import { afterAll, beforeAll } from 'vitest';

export interface TestStack {
  url: string;
  config: Config;
  process: RunningProcess;
  /** A key of the tenant "test", which the stack's client uses. */
  apiKey: string;
  /** Docker filters matching everything this stack created. */
  labels: string[];
  stop(): Promise<void>;
}

/**
 * The whole system in this test process, isolated from other stacks: its own database, its own
 * NATS subject prefix and stream, its own instance label on every container and volume.
 */
export async function startTestStack(env: Record<string, string> = {}): Promise<TestStack> {
  const database = await createTestDatabase();
  const config = loadConfig({
    ...process.env,
    TEE_DATABASE_URL: database.url,
    TEE_SUBJECT_PREFIX: testSubjectPrefix(),
    TEE_INSTANCE_ID: `test-${uniqueSuffix()}`,
    TEE_PORT: '0',
    TEE_SHUTDOWN_GRACE_MS: '1000',
    TEE_EGRESS_PROXY_PORT: '0',
    TEE_LOG_LEVEL: process.env.TEE_LOG_LEVEL ?? 'warn',
    // Tests run many things at once as one tenant; tenants.test.ts sets its own quotas, and
    // admission.test.ts its own instance limits.
    TEE_QUOTA_ENVIRONMENTS: '100000',
    TEE_QUOTA_CONCURRENT_EXECUTIONS: '100000',
    TEE_QUOTA_CONCURRENT_SETUPS: '100000',
    TEE_MAX_RUNNING_EXECUTIONS: '100000',
    TEE_MAX_RUNNING_SETUPS: '100000',
    TEE_SANDBOX_MEMORY_MB: String(1024 * 1024),
    ...env,
  });
  const logger = createLogger({ level: config.logLevel }, { name: 'test-stack' });
  let running: RunningProcess;
  try {
    running = await startProcess({
      name: 'test-stack',
      config,
      logger,
      createServices: createAllServices,
    });
  } catch (error) {
    await database.drop();
    throw error;
  }
  const { bus, sandbox, apiKeys } = running.infrastructure;
  const streamName = bus.streamName;
  const { key: apiKey } = await apiKeys.create('test', 'the test stack');
  return {
    url: running.url,
    config,
    process: running,
    apiKey,
    labels: labelFilter({ instanceId: config.instanceId }),
    async stop() {
      await running.stop();
      await removeLabelled(sandbox, { instanceId: config.instanceId });
      await deleteTestStream(config.nats.servers, streamName);
      await database.drop();
    },
  };
}

export interface StackWithClient {
  readonly stack: TestStack;
  /** A client of the tenant "test". */
  readonly client: AssistTeeClient;
  /** A client with the services' key, for the operator calls (pool status, sweeps). */
  readonly operator: AssistTeeClient;
  /** A client with a new key of another tenant (and these client options, e.g. retry). */
  clientOf(
    tenantId: string,
    options?: Omit<AssistTeeClientOptions, 'baseUrl' | 'apiKey'>,
  ): Promise<AssistTeeClient>;
}

/**
 * One stack for the calling describe block, started before its tests and stopped after them,
 * with a typed client on it. Read the fields inside tests, once the stack has started.
 */
export function useTestStack(env: Record<string, string> = {}): StackWithClient {
  let current: StackWithClient | undefined;
  beforeAll(async () => {
    const stack = await startTestStack(env);
    current = {
      stack,
      client: createAssistTeeClient({ baseUrl: stack.url, apiKey: stack.apiKey }),
      operator: createAssistTeeClient({
        baseUrl: stack.url,
        apiKey: stack.config.auth.serviceKey,
      }),
      async clientOf(tenantId, options = {}) {
        const { key } = await stack.process.infrastructure.apiKeys.create(tenantId, 'a test');
        return createAssistTeeClient({ ...options, baseUrl: stack.url, apiKey: key });
      },
    };
  });
  afterAll(async () => {
    await current?.stack.stop();
  });
  const started = () => {
    if (!current) throw new Error('the test stack has not started');
    return current;
  };
  return {
    get stack() {
      return started().stack;
    },
    get client() {
      return started().client;
    },
    get operator() {
      return started().operator;
    },
    clientOf: (tenantId, options) => started().clientOf(tenantId, options),
  };
}
