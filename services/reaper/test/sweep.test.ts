import { create } from '@bufbuild/protobuf';
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
} from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { createLogger } from '@assist-tee/logger';
import {
  admin,
  EnvironmentSchema,
  EnvironmentService,
  EnvironmentStatus,
  ExecutionService,
} from '@assist-tee/proto';
import { buildDenoImage } from '@assist-tee/runtime-deno';
import {
  createDockerClient,
  SandboxDriver,
  type SandboxLabels,
  toDockerLabels,
} from '@assist-tee/sandbox';
import { freePort, listLabelled, removeLabelled, uniqueSuffix } from '@assist-tee/testing';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sweep, type SweepDeps } from '../src/sweep.js';

// Real Docker containers (created, never started) under this test's own deployment; the other
// services answer from in-memory routers.
const logger = createLogger({ level: 'silent' });
const docker = createDockerClient({ socketPath: '/var/run/docker.sock' });
const deployment = `test-reaper-${uniqueSuffix()}`;
const driver = new SandboxDriver({ docker, logger, runtime: 'runsc', deployment });
const environmentId = `env-${uniqueSuffix()}`;
let image: string;

beforeAll(async () => {
  image = await buildDenoImage(driver, logger);
}, 300_000);
afterEach(() => removeLabelled(driver, {}));

/** A never-started container carrying these labels; returns its id. */
async function plant(labels: Partial<SandboxLabels>): Promise<string> {
  const container = await docker.createContainer({
    Image: image,
    Labels: toDockerLabels({ owner: 'execution', instanceId: 'gone', deployment, ...labels }),
  });
  return container.id;
}

const environments = createClient(
  EnvironmentService,
  createRouterTransport(({ service }) =>
    service(EnvironmentService, {
      // One READY environment that does not expire: warm sandboxes of it are not orphans for that.
      listEnvironments: () => ({
        environments: [
          create(EnvironmentSchema, {
            id: environmentId,
            status: EnvironmentStatus.READY,
            ttlSeconds: 86_400,
          }),
        ],
      }),
    }),
  ),
);

const executions = createClient(
  ExecutionService,
  createRouterTransport(({ service }) =>
    service(ExecutionService, {
      getExecution: ({ id }) => {
        throw new ConnectError(`execution ${id} not found`, Code.NotFound);
      },
    }),
  ),
);

/** A SessionSandboxService whose ACTIVE sessions hold these containers. */
function sessionsHolding(containerIds: string[]): Client<typeof admin.SessionSandboxService> {
  return createClient(
    admin.SessionSandboxService,
    createRouterTransport(({ service }) =>
      service(admin.SessionSandboxService, {
        endLostSessions: () => ({ sessionIds: ['lost-session'] }),
        listSessionSandboxes: () => ({
          sandboxes: containerIds.map((containerId, index) => ({
            sessionId: `session-${index}`,
            containerId,
            instanceId: 'other-instance',
          })),
        }),
      }),
    ),
  );
}

function deps(sessions: Client<typeof admin.SessionSandboxService>): SweepDeps {
  // No grace and a short warm lifetime: every planted container is old enough to be judged.
  return {
    environments,
    executions,
    sessions,
    sandbox: driver,
    logger,
    orphanGraceMs: 0,
    warmMaxAgeMs: 1000,
  };
}

/** An hour from now: every planted container is past the warm lifetime. */
const later = () => Date.now() + 3_600_000;

const remaining = async () =>
  new Set((await listLabelled(driver, {})).containers.map((container) => container.id));

describe('sweep and sessions', () => {
  it('keeps what sessions hold, whatever its labels, and removes what they do not', async () => {
    const heldWarm = await plant({ pool: 'warm', environmentId });
    const heldForSession = await plant({ sessionId: 'active-session', environmentId });
    // Removed: a warm one past its lifetime, and one whose session no longer holds it.
    await plant({ pool: 'warm', environmentId });
    await plant({ sessionId: 'ended-session', environmentId });

    const report = await sweep(deps(sessionsHolding([heldWarm, heldForSession])), later());

    expect(await remaining()).toEqual(new Set([heldWarm, heldForSession]));
    expect(report.removedContainers).toBe(2);
    expect(report.lostSessions).toBe(1);
    expect(report.errors).toEqual([]);
  });

  it('removes no execution container when the SessionSandboxService cannot be reached', async () => {
    const warm = await plant({ pool: 'warm', environmentId });
    const forSession = await plant({ sessionId: 'some-session', environmentId });
    const ofExecution = await plant({ executionId: 'finished-execution', environmentId });
    // Not the execution service's: the rest of the sweep still runs.
    await plant({ owner: 'environments', environmentId });
    const unreachable = createClient(
      admin.SessionSandboxService,
      createConnectTransport({
        baseUrl: `http://127.0.0.1:${await freePort()}`,
        httpVersion: '1.1',
      }),
    );

    const report = await sweep(deps(unreachable), later());

    expect(await remaining()).toEqual(new Set([warm, forSession, ofExecution]));
    expect(report.removedContainers).toBe(1);
    expect(report.lostSessions).toBe(0);
    expect(report.errors).toEqual([expect.stringMatching(/^listing session sandboxes: /)]);
  });
});
