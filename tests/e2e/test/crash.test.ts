import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createAssistTeeClient, ExecutionStatus, Runtime } from '@assist-tee/client';
import { createLogger } from '@assist-tee/logger';
import { createDockerClient, SandboxDriver } from '@assist-tee/sandbox';
import {
  collectEvents,
  createTestDatabase,
  deleteTestStream,
  removeLabelled,
  type TestDatabase,
  testSubjectPrefix,
  uniqueSuffix,
} from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handlerModules, type ServiceProcess, startService, stopService } from '../src/index.js';

const NATS = 'nats://127.0.0.1:4222';
const run = promisify(execFile);

// Real processes, a real SIGKILL: what a crash of the execution service leaves, a restart mends.
describe('the execution service killed mid-execution', () => {
  const instanceId = `test-${uniqueSuffix()}`;
  const subjectPrefix = testSubjectPrefix();
  const sandbox = new SandboxDriver({
    docker: createDockerClient({ socketPath: '/var/run/docker.sock' }),
    logger: createLogger({ level: 'silent' }),
    runtime: 'runsc',
    networkRuntime: 'runsc-net',
  });
  let database: TestDatabase;
  let env: Record<string, string>;
  let environments: ServiceProcess;
  let execution: ServiceProcess | undefined;
  const ownFirewallRules = async () =>
    (await run('iptables', ['-w', '-S', 'ASSIST-TEE-INPUT'])).stdout
      .split('\n')
      .filter((line) => line.includes(`assist-tee:${instanceId}`));

  beforeAll(async () => {
    database = await createTestDatabase();
    env = {
      TEE_DATABASE_URL: database.url,
      TEE_SUBJECT_PREFIX: subjectPrefix,
      TEE_INSTANCE_ID: instanceId,
    };
    environments = await startService('environments', env);
  });
  afterAll(async () => {
    if (execution) await stopService(execution);
    if (environments) await stopService(environments);
    const rulesLeft = await ownFirewallRules();
    await removeLabelled(sandbox, { instanceId });
    await deleteTestStream(NATS, `${subjectPrefix.toUpperCase()}_EVENTS`);
    await database?.drop();
    // Checked after the cleanup, so a failure here leaves nothing else behind.
    expect(rulesLeft).toEqual([]);
  });

  it('finishes the execution as SANDBOX_ERROR on restart, removes its sandbox and publishes it', async () => {
    const events = await collectEvents(NATS, subjectPrefix);
    try {
      const executionEnv = { ...env, TEE_ENVIRONMENTS_URL: environments.url };
      execution = await startService('execution', executionEnv);
      const client = (url: string) => createAssistTeeClient({ baseUrl: url });
      const { environment } = await client(environments.url).environments.createEnvironment({
        ...handlerModules('await new Promise((resolve) => setTimeout(resolve, 120_000));'),
        runtime: Runtime.DENO,
      });
      const call = client(execution.url)
        .executions.execute({ environmentId: environment!.id, limits: { timeoutMs: 200_000 } })
        .catch((error: unknown) => error);

      // Wait until its sandbox runs, then kill the service under it.
      let executionId: string | undefined;
      for (let tries = 0; tries < 150 && executionId === undefined; tries++) {
        const [container] = await sandbox.listContainers({ instanceId, owner: 'execution' });
        executionId = container?.labels['dev.assist-tee.execution-id'];
        if (executionId === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(executionId).toBeDefined();
      expect(await stopService(execution, 'SIGKILL')).toBe(null);
      expect(await call).toBeInstanceOf(Error);

      execution = await startService('execution', executionEnv);
      // The killed process's firewall opening for its proxy port is gone; the new one has its own.
      expect(await ownFirewallRules()).toHaveLength(1);
      const { execution: after } = await client(execution.url).executions.getExecution({
        id: executionId!,
      });
      expect(after!.status).toBe(ExecutionStatus.SANDBOX_ERROR);
      expect(after!.error?.name).toBe('SandboxLost');
      expect(await sandbox.listContainers({ executionId: executionId! })).toEqual([]);
      const finished = (seen: typeof events.events) =>
        seen.filter(
          (event) =>
            event.type === 'execution.finished' &&
            'execution' in event.message &&
            event.message.execution?.id === executionId,
        );
      await events.waitFor((seen) => finished(seen).length > 0, 15_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(finished(events.events)).toHaveLength(1);
      await client(environments.url).environments.deleteEnvironment({ id: environment!.id });
    } finally {
      await events.stop();
    }
  });
});
