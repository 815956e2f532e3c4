import {
  type AssistTeeClient,
  createAssistTeeClient,
  type Environment,
  EnvironmentStatus,
  Runtime,
  SetupPhase,
} from '@assist-tee/client';
import { listLabelled, waitForRunning } from '@assist-tee/testing';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import {
  queryRows,
  setEnvironmentStatus,
  startTestStack,
  sumExample,
  useTestStack,
} from '../src/index.js';

// As in dependencies.test.ts: tiny, no dependencies of its own, on the registry these machines
// reach.
const IS_NUMBER = 'is-number@7.0.0';
const MISSING = 'assist-tee-no-such-package-4c1d9e@1.0.0';
const withDependency = (npm: string) => ({
  runtime: Runtime.DENO,
  mainModule: 'main.ts',
  modules: { 'main.ts': 'import isNumber from "is-number";\nexport const handler = () => 1;\n' },
  dependencies: { npm: [npm] },
});

interface Watched {
  phases: SetupPhase[];
  /** Phases and output lines in the order they came, output as "> text". */
  events: string[];
  lines: string[];
  environment: Environment;
  /** How many messages followed the environment (none are allowed). */
  after: number;
}

async function watch(client: AssistTeeClient, id: string): Promise<Watched> {
  const phases: SetupPhase[] = [];
  const events: string[] = [];
  const lines: string[] = [];
  let environment: Environment | undefined;
  let after = 0;
  let lastTime = 0;
  for await (const { event } of client.environments.watchEnvironment({ id })) {
    if (environment !== undefined) after += 1;
    if (event.case === 'phase') {
      phases.push(event.value.phase);
      events.push(SetupPhase[event.value.phase]);
      const time = timestampMs(event.value.time!);
      expect(time).toBeGreaterThanOrEqual(lastTime);
      lastTime = time;
    } else if (event.case === 'output') {
      lines.push(event.value.text);
      events.push(`> ${event.value.text}`);
    } else if (event.case === 'environment') {
      environment = event.value;
    }
  }
  if (environment === undefined) throw new Error('the watch ended without the environment');
  return { phases, events, lines, environment, after };
}

const codeOf = (call: Promise<unknown>) =>
  call.then(
    () => 'ok',
    (error: unknown) => Code[ConnectError.from(error).code],
  );

describe.each(['connect', 'grpc'] as const)('watching a setup over %s', (protocol) => {
  const tee = useTestStack();
  const client = () =>
    createAssistTeeClient({ baseUrl: tee.stack.url, protocol, apiKey: tee.stack.apiKey });
  const get = async (id: string) =>
    (await client().environments.getEnvironment({ id })).environment!;

  it('returns PENDING at once, then streams the phases in order, the install output and the environment', async () => {
    const started = Date.now();
    const { environment: pending } = await client().environments.createEnvironment({
      ...withDependency(IS_NUMBER),
      returnPending: true,
    });
    const answeredMs = Date.now() - started;
    expect(pending!.status).toBe(EnvironmentStatus.PENDING);
    expect(pending!.lockfile).toBe('');

    const watched = await watch(client(), pending!.id);
    expect(watched.phases).toEqual([
      SetupPhase.VALIDATING,
      SetupPhase.WRITING_MODULES,
      SetupPhase.INSTALLING,
      SetupPhase.CHECKING,
      SetupPhase.READY,
    ]);
    // The package manager's lines come while it installs.
    expect(watched.lines.length).toBeGreaterThan(0);
    const installing = watched.events.indexOf('INSTALLING');
    const checking = watched.events.indexOf('CHECKING');
    expect(watched.events.slice(installing + 1, checking)).toEqual(
      watched.lines.map((line) => `> ${line}`),
    );
    expect(watched.after).toBe(0);
    expect(watched.environment.status).toBe(EnvironmentStatus.READY);
    expect(watched.environment.lockfile).toContain('is-number');
    expect(watched.environment).toEqual(await get(pending!.id));
    // The install took longer than the answer did.
    expect(timestampMs(watched.environment.updateTime!) - started).toBeGreaterThan(answeredMs);

    // A watcher that comes after the end gets the final phase and the environment at once.
    const late = await watch(client(), pending!.id);
    expect(late.events).toEqual(['READY']);
    expect(late.environment).toEqual(watched.environment);

    // So does one of a deleted environment.
    await client().environments.deleteEnvironment({ id: pending!.id });
    const deleted = await watch(client(), pending!.id);
    expect(deleted.events).toEqual(['READY']);
    expect(deleted.environment.status).toBe(EnvironmentStatus.DELETED);
  });

  it('ends a setup whose PENDING environment is deleted: the deletion stands', async () => {
    const { environment: pending } = await client().environments.createEnvironment({
      ...withDependency(IS_NUMBER),
      returnPending: true,
    });
    const id = pending!.id;
    const watching = watch(client(), id);
    const { sandbox } = tee.stack.process.infrastructure;
    await waitForRunning(sandbox, { environmentId: id, owner: 'environments' });
    const { environment: deleted } = await client().environments.deleteEnvironment({ id });
    expect(deleted!.status).toBe(EnvironmentStatus.DELETED);

    const watched = await watching;
    expect(watched.phases.at(-1)).toBe(SetupPhase.FAILED);
    expect(watched.environment.status).toBe(EnvironmentStatus.DELETED);
    // The setup has ended and recorded nothing over the deletion.
    expect(await get(id)).toEqual(watched.environment);
    expect(await listLabelled(sandbox, { environmentId: id })).toEqual({
      containers: [],
      volumes: [],
    });
  });

  it('streams a failing install to FAILED and the environment with its error', async () => {
    const { environment: pending } = await client().environments.createEnvironment({
      ...withDependency(MISSING),
      returnPending: true,
    });
    expect(pending!.status).toBe(EnvironmentStatus.PENDING);
    const watched = await watch(client(), pending!.id);
    expect(watched.phases).toEqual([
      SetupPhase.VALIDATING,
      SetupPhase.WRITING_MODULES,
      SetupPhase.INSTALLING,
      SetupPhase.FAILED,
    ]);
    expect(watched.lines.join('\n')).toContain('assist-tee-no-such-package-4c1d9e');
    expect(watched.environment.status).toBe(EnvironmentStatus.FAILED);
    expect(watched.environment.error).toMatch(/^installing dependencies failed with exit code/);
    expect(watched.environment).toEqual(await get(pending!.id));
    expect((await watch(client(), pending!.id)).events).toEqual(['FAILED']);
  });

  it('returns PENDING without dependencies too, and blocks until READY without return_pending', async () => {
    const { environment: pending } = await client().environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
      returnPending: true,
    });
    expect(pending!.status).toBe(EnvironmentStatus.PENDING);
    const watched = await watch(client(), pending!.id);
    // Storing two modules is quick: the watch may come after it ended.
    expect([
      [SetupPhase.VALIDATING, SetupPhase.WRITING_MODULES, SetupPhase.READY],
      [SetupPhase.READY],
    ]).toContainEqual(watched.phases);
    expect(watched.lines).toEqual([]);
    expect(watched.environment.status).toBe(EnvironmentStatus.READY);

    const { environment: blocked } = await client().environments.createEnvironment({
      ...withDependency(IS_NUMBER),
    });
    expect(blocked!.status).toBe(EnvironmentStatus.READY);
    expect(blocked!.lockfile).toContain('is-number');
  });

  it('answers an invalid request with the error, not a PENDING environment', async () => {
    const call = client().environments.createEnvironment({
      ...sumExample,
      mainModule: 'missing.ts',
      runtime: Runtime.DENO,
      returnPending: true,
    });
    expect(await codeOf(call)).toBe('InvalidArgument');
  });

  it("is not_found for another tenant's environment and for an unknown id", async () => {
    const { environment } = await client().environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
    });
    const other = await tee.clientOf(`other-${protocol}`);
    expect(await codeOf(watch(other, environment!.id))).toBe('NotFound');
    expect(await codeOf(watch(client(), '00000000-0000-4000-8000-000000000000'))).toBe('NotFound');
    expect(await codeOf(watch(client(), 'not-a-uuid'))).toBe('NotFound');
  });

  it('follows a setup this instance does not run by reading the row until it has ended', async () => {
    const { environment } = await client().environments.createEnvironment({
      ...sumExample,
      runtime: Runtime.DENO,
    });
    const id = environment!.id;
    const setStatus = (status: string) =>
      setEnvironmentStatus(tee.stack.config.databaseUrl, id, status);
    // As a replica, or this instance before a restart, would have left it.
    await setStatus('PENDING');
    let ended = false;
    const watching = watch(client(), id).finally(() => (ended = true));
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(ended).toBe(false);
    await setStatus('READY');
    const watched = await watching;
    expect(watched.events).toEqual(['READY']);
    expect(watched.environment.status).toBe(EnvironmentStatus.READY);
  });
});

describe('a service that stops during a setup that returned PENDING', () => {
  it('cuts it short: FAILED, streamed to its watcher, and nothing is left', async () => {
    // No grace for setups: stopping cuts the install short at once.
    const stack = await startTestStack({ TEE_SHUTDOWN_GRACE_MS: '0' });
    try {
      const client = createAssistTeeClient({ baseUrl: stack.url, apiKey: stack.apiKey });
      const { environment } = await client.environments.createEnvironment({
        ...withDependency(IS_NUMBER),
        runtime: Runtime.BUN,
        returnPending: true,
      });
      const watching = watch(client, environment!.id);
      const { sandbox } = stack.process.infrastructure;
      await waitForRunning(sandbox, { instanceId: stack.config.instanceId, owner: 'environments' });
      await stack.process.stop();

      const watched = await watching;
      expect(watched.phases.at(-1)).toBe(SetupPhase.FAILED);
      expect(watched.environment.status).toBe(EnvironmentStatus.FAILED);
      expect(watched.environment.error).toBe(
        'the environments service stopped before the setup finished',
      );
      const rows = await queryRows<{ status: string }>(
        stack.config.databaseUrl,
        'select status from environments.environment',
      );
      expect(rows).toEqual([{ status: 'FAILED' }]);
      expect(await listLabelled(sandbox, { environmentId: environment!.id })).toEqual({
        containers: [],
        volumes: [],
      });
    } finally {
      await stack.stop();
    }
  });
});
