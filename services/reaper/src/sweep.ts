import { timestampMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type Client } from '@connectrpc/connect';
import type { SweepReportRecord } from '@assist-tee/db';
import type { Logger } from '@assist-tee/logger';
import {
  type admin,
  DeletionReason,
  type Environment,
  type EnvironmentService,
  EnvironmentStatus,
  type ExecutionService,
  ExecutionStatus,
} from '@assist-tee/proto';
import {
  fromDockerLabels,
  listRunscSandboxes,
  removeRunscSandbox,
  type RunscHost,
  type SandboxDriver,
} from '@assist-tee/sandbox';

export interface SweepDeps {
  environments: Client<typeof EnvironmentService>;
  executions: Client<typeof ExecutionService>;
  sessions: Client<typeof admin.SessionSandboxService>;
  sandbox: SandboxDriver;
  logger: Logger;
  /** Containers and volumes younger than this are left alone: their owner may be mid-write. */
  orphanGraceMs: number;
  /**
   * The longest a warm sandbox stays with its execution service: idle in the pool, then one
   * run. An older one was left by an instance that is gone.
   */
  warmMaxAgeMs: number;
  /** Where the engine's runsc keeps sandbox state; without it stray sandboxes are not looked for. */
  runsc?: RunscHost;
}

/**
 * One sweep: environments past their TTL are deleted through the EnvironmentService (reason
 * EXPIRED, so environment.deleted says so), sessions whose instance is gone are ended as LOST,
 * then containers and volumes of this deployment that nothing owns any more are removed, and
 * runsc sandboxes the engine no longer lists. Executions stuck RUNNING are the execution
 * service's to finish (it owns their rows); it does so on start and on its own interval.
 */
export async function sweep(deps: SweepDeps, now = Date.now()): Promise<SweepReportRecord> {
  const report: SweepReportRecord = {
    expiredEnvironments: 0,
    removedContainers: 0,
    removedVolumes: 0,
    removedRunscSandboxes: 0,
    lostSessions: 0,
    errors: [],
  };
  const failed = (what: string, error: unknown) => {
    const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
    deps.logger.warn({ err: error }, what);
    report.errors.push(message);
  };

  const live = await liveEnvironments(deps);
  for (const environment of [...live.values()]) {
    if (!expired(environment, now)) continue;
    try {
      await deps.environments.deleteEnvironment({
        id: environment.id,
        reason: DeletionReason.EXPIRED,
      });
      report.expiredEnvironments += 1;
      live.delete(environment.id);
    } catch (error) {
      if (ConnectError.from(error).code === Code.NotFound) live.delete(environment.id);
      else failed(`expiring environment ${environment.id}`, error);
    }
  }

  const oldEnough = (created: Date) => created.getTime() < now - deps.orphanGraceMs;
  const liveOwner = (environmentId: string | undefined) => {
    const owner = environmentId === undefined ? undefined : live.get(environmentId);
    return owner !== undefined && owner.status !== EnvironmentStatus.FAILED;
  };
  const warmIsOrphan = (environmentId: string | undefined, created: Date) =>
    !liveOwner(environmentId) || created.getTime() < now - deps.orphanGraceMs - deps.warmMaxAgeMs;
  const held = await sessionSandboxes(deps, report, failed);
  for (const container of await deps.sandbox.listContainers({})) {
    if (!oldEnough(container.createdAt)) continue;
    try {
      const labels = fromDockerLabels(container.labels);
      if (held === undefined ? ownedByExecution(labels) : held.has(container.id)) continue;
      // A session-labelled container no session holds: its session ended or was never stored.
      const orphan =
        labels.sessionId !== undefined ||
        (labels.pool === 'warm'
          ? warmIsOrphan(labels.environmentId, container.createdAt)
          : await containerIsOrphan(deps, labels));
      if (!orphan) continue;
      await deps.sandbox.removeContainer(container.id);
      report.removedContainers += 1;
    } catch (error) {
      failed(`removing container ${container.id.slice(0, 12)}`, error);
    }
  }
  for (const volume of await deps.sandbox.listVolumes({})) {
    if (!oldEnough(volume.createdAt)) continue;
    if (liveOwner(fromDockerLabels(volume.labels).environmentId)) continue;
    try {
      await deps.sandbox.removeVolume(volume.name);
      report.removedVolumes += 1;
    } catch (error) {
      failed(`removing volume ${volume.name}`, error);
    }
  }
  if (deps.runsc !== undefined) {
    try {
      report.removedRunscSandboxes = await removeStrayRunscSandboxes(
        deps,
        deps.runsc,
        oldEnough,
        failed,
      );
    } catch (error) {
      failed('listing runsc sandboxes', error);
    }
  }
  return report;
}

/**
 * runsc sandboxes that Docker does not list: no one can stop them through the engine any more.
 * runsc is asked first: the engine lists a container from before runsc creates its sandbox
 * until after runsc has deleted it, so one it is starting or removing is never taken for stray.
 * Engine-wide, whatever the deployment: a sandbox Docker lost has no labels to tell.
 */
async function removeStrayRunscSandboxes(
  deps: SweepDeps,
  runsc: RunscHost,
  oldEnough: (created: Date) => boolean,
  failed: (what: string, error: unknown) => void,
): Promise<number> {
  const sandboxes = await listRunscSandboxes(runsc);
  const known = await deps.sandbox.engineContainerIds();
  let removed = 0;
  for (const stray of sandboxes) {
    if (known.has(stray.id) || !oldEnough(stray.createdAt)) continue;
    try {
      await removeRunscSandbox(runsc, stray.id);
      deps.logger.info({ id: stray.id, status: stray.status }, 'removed a stray runsc sandbox');
      removed += 1;
    } catch (error) {
      failed(`removing runsc sandbox ${stray.id.slice(0, 12)}`, error);
    }
  }
  return removed;
}

/**
 * The containers ACTIVE sessions hold, once the sessions of gone instances are ended as LOST;
 * undefined (the failure recorded) when the execution service cannot say, and then no
 * container it may own is taken for an orphan.
 */
async function sessionSandboxes(
  deps: SweepDeps,
  report: SweepReportRecord,
  failed: (what: string, error: unknown) => void,
): Promise<Set<string> | undefined> {
  try {
    const { sessionIds } = await deps.sessions.endLostSessions({});
    report.lostSessions = sessionIds.length;
    const { sandboxes } = await deps.sessions.listSessionSandboxes({});
    return new Set(sandboxes.map((sandbox) => sandbox.containerId));
  } catch (error) {
    failed('listing session sandboxes', error);
    return undefined;
  }
}

/** What the execution service may hold: its executions', warm and sessions' sandboxes. */
function ownedByExecution(labels: ReturnType<typeof fromDockerLabels>): boolean {
  return labels.owner === 'execution' || labels.sessionId !== undefined;
}

/** Every environment that is not DELETED, by id. */
async function liveEnvironments(deps: SweepDeps): Promise<Map<string, Environment>> {
  const live = new Map<string, Environment>();
  let pageToken = '';
  do {
    const page = await deps.environments.listEnvironments({ pageSize: 500, pageToken });
    for (const environment of page.environments) live.set(environment.id, environment);
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return live;
}

/** TTL counts from the last use (creation counts as use). */
function expired(environment: Environment, now: number): boolean {
  if (
    environment.status !== EnvironmentStatus.READY &&
    environment.status !== EnvironmentStatus.FAILED
  ) {
    return false;
  }
  const lastUse = environment.lastUsedTime ?? environment.createTime;
  if (lastUse === undefined) return false;
  return timestampMs(lastUse) + environment.ttlSeconds * 1000 <= now;
}

/**
 * An execution's sandbox is an orphan once its execution is over (or unknown); any other
 * container (a setup helper) only lives for the call that made it. Warm sandboxes: see
 * warmIsOrphan.
 */
async function containerIsOrphan(
  deps: SweepDeps,
  labels: ReturnType<typeof fromDockerLabels>,
): Promise<boolean> {
  if (labels.executionId === undefined) return true;
  try {
    const { execution } = await deps.executions.getExecution({ id: labels.executionId });
    return execution?.status !== ExecutionStatus.RUNNING;
  } catch (error) {
    if (ConnectError.from(error).code === Code.NotFound) return true;
    throw error;
  }
}
