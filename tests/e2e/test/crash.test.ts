import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ExecutionStatus, Runtime } from '@assist-tee/client';
import { collectEvents, expectNothingLabelled, waitForRunning } from '@assist-tee/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  allEventsIn,
  expectSettled,
  handlerModules,
  type ProcessTestBed,
  queryRows,
  type ServiceProcess,
  startProcessTestBed,
  stopService,
} from '../src/index.js';

const run = promisify(execFile);
const RUNNING_ROWS = `select id from execution.execution where status = 'RUNNING'`;

// Real processes, a real SIGKILL: what a crash of the execution service leaves, a restart mends.
describe('the execution service killed mid-execution', () => {
  let bed: ProcessTestBed;
  let environments: ServiceProcess;
  // The instance's openings in the host firewall: set elements carrying its id as their comment.
  const ownFirewallRules = async () => {
    const { stdout } = await run('nft', ['-j', 'list', 'set', 'inet', 'assist_tee', 'openings']);
    const { nftables } = JSON.parse(stdout) as {
      nftables: { set?: { elem?: { elem?: { comment?: string } }[] } }[];
    };
    const elements = nftables.flatMap((object) => object.set?.elem ?? []);
    return elements.filter((element) => element.elem?.comment === bed.instanceId);
  };

  beforeAll(async () => {
    bed = await startProcessTestBed();
    environments = await bed.start('environments');
  });
  afterAll(async () => {
    await bed?.tearDown();
    const rulesLeft = await ownFirewallRules();
    // Checked after the cleanup, so a failure here leaves nothing else behind.
    expect(rulesLeft).toEqual([]);
  });

  it('finishes the execution as SANDBOX_ERROR on restart, removes its sandbox and publishes it', async () => {
    const { sandbox, instanceId } = bed;
    const events = await collectEvents(bed.natsUrl, bed.subjectPrefix);
    try {
      const executionEnv = { TEE_ENVIRONMENTS_URL: environments.url };
      let execution = await bed.start('execution', executionEnv);
      const client = (url: string) => bed.client(url);
      const { environment } = await client(environments.url).environments.createEnvironment({
        ...handlerModules('await new Promise((resolve) => setTimeout(resolve, 120_000));'),
        runtime: Runtime.DENO,
      });
      const call = client(execution.url)
        .executions.execute({ environmentId: environment!.id, limits: { timeoutMs: 200_000 } })
        .catch((error: unknown) => error);

      // Wait until its sandbox runs, then kill the service under it.
      const [container] = await waitForRunning(sandbox, { instanceId, owner: 'execution' });
      const executionId = container!.labels['dev.assist-tee.execution-id']!;
      expect(await stopService(execution, 'SIGKILL')).toBe(null);
      expect(await call).toBeInstanceOf(Error);

      execution = await bed.start('execution', executionEnv);
      // The killed process's firewall opening for its proxy port is gone; the new one has its own.
      expect(await ownFirewallRules()).toHaveLength(1);
      const { execution: after } = await client(execution.url).executions.getExecution({
        id: executionId,
      });
      expect(after!.status).toBe(ExecutionStatus.SANDBOX_ERROR);
      expect(after!.error?.name).toBe('SandboxLost');
      expect(await sandbox.listContainers({ executionId })).toEqual([]);
      const finished = (seen: typeof events.events) =>
        seen.filter(
          (event) =>
            event.type === 'execution.finished' &&
            'execution' in event.message &&
            event.message.execution?.id === executionId,
        );
      await events.waitFor((seen) => finished(seen).length > 0, 15_000);
      expect(finished(await allEventsIn(bed.databaseUrl, events))).toHaveLength(1);
      await client(environments.url).environments.deleteEnvironment({ id: environment!.id });
      await expectSettled({ sandbox, databaseUrl: bed.databaseUrl, labels: { instanceId } });
      // The next test runs this instance again, with the pool on.
      expect(await stopService(execution)).toBe(0);
    } finally {
      await events.stop();
    }
  });

  it('also removes the warm sandboxes it left on restart, idle or running an execution', async () => {
    const { sandbox, instanceId } = bed;
    const poolOn = { TEE_ENVIRONMENTS_URL: environments.url, TEE_POOL_MAX_PER_ENVIRONMENT: '4' };
    const execution = await bed.start('execution', poolOn);
    const client = (url: string) => bed.client(url);
    const { environment } = await client(environments.url).environments.createEnvironment({
      ...handlerModules('await new Promise((resolve) => setTimeout(resolve, 120_000));'),
      runtime: Runtime.DENO,
    });
    // environment.created starts a warm sandbox; the execution takes it, the pool starts another.
    await waitForRunning(sandbox, { instanceId, pool: 'warm' });
    const call = client(execution.url)
      .executions.execute({ environmentId: environment!.id, limits: { timeoutMs: 200_000 } })
      .catch((error: unknown) => error);
    await waitForRunning(sandbox, { instanceId, pool: 'warm' }, 2);
    await expect.poll(async () => (await queryRows(bed.databaseUrl, RUNNING_ROWS)).length).toBe(1);
    expect(await stopService(execution, 'SIGKILL')).toBe(null);
    expect(await call).toBeInstanceOf(Error);
    expect(
      (await sandbox.listContainers({ instanceId, pool: 'warm' })).length,
    ).toBeGreaterThanOrEqual(2);

    // The restart (its start-up recovery) removes what the killed process left.
    await bed.start('execution', poolOn);
    const rows = await queryRows<{ status: string; warm: boolean }>(
      bed.databaseUrl,
      'select status, warm from execution.execution where environment_id = $1',
      [environment!.id],
    );
    expect(rows).toEqual([{ status: 'SANDBOX_ERROR', warm: true }]);
    await expectNothingLabelled(sandbox, { instanceId, pool: 'warm' });
    await client(environments.url).environments.deleteEnvironment({ id: environment!.id });
    await expectSettled({ sandbox, databaseUrl: bed.databaseUrl, labels: { instanceId } });
  });
});
