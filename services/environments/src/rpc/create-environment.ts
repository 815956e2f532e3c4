import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type HandlerContext } from '@connectrpc/connect';
import { FlushMode } from '@mikro-orm/core';
import { setupMemoryMb } from '@assist-tee/config';
import { EnvironmentEntity, type RuntimeName } from '@assist-tee/db';
import { eventHeader } from '@assist-tee/events';
import {
  type CreateEnvironmentRequest,
  type CreateEnvironmentResponse,
  CreateEnvironmentResponseSchema,
  EnvironmentCreatedSchema,
  EnvironmentFailedSchema,
  Runtime,
} from '@assist-tee/proto';
import { findRuntime, hasDependencies } from '@assist-tee/runtime-core';
import { environmentVolumeName } from '@assist-tee/sandbox';
import { requireTenant, withinLimits } from '@assist-tee/server';
import type { EnvironmentsDeps } from '../deps.js';
import { toEnvironmentMessage } from '../environment-message.js';
import { InstallFailedError } from '../setup/install-dependencies.js';
import { setUpEnvironment } from '../setup/set-up-environment.js';
import { type ValidCreateRequest, validateCreateRequest } from '../validate-create.js';

/**
 * Validates the request, stores the modules in a fresh volume, installs the dependencies and
 * records the environment. The row is written PENDING first so a crash mid-setup leaves a
 * trace the reaper can follow; a failure removes the volume and marks the row FAILED.
 */
export function createEnvironment(deps: EnvironmentsDeps) {
  return async (
    request: CreateEnvironmentRequest,
    context: HandlerContext,
  ): Promise<CreateEnvironmentResponse> => {
    const tenantId = requireTenant(context);
    return withinLimits(
      [() => deps.setupQuota.acquire(tenantId), () => deps.runningSetups.acquire()],
      () => deps.work.run((signal) => admitSetUp(deps, tenantId, request, signal)),
    );
  };
}

/** Validates, then holds the memory of an install (if any) while the setup runs. */
async function admitSetUp(
  deps: EnvironmentsDeps,
  tenantId: string,
  request: CreateEnvironmentRequest,
  signal: AbortSignal,
): Promise<CreateEnvironmentResponse> {
  const valid = validateCreateRequest(request, {
    ...deps.config.modules,
    ...deps.config.environments,
    maxDependencies: deps.config.setup.maxDependencies,
  });
  // Only an install runs a sandbox; storing the modules does not.
  const memory = hasDependencies(valid.dependencies)
    ? await deps.memory.admit(setupMemoryMb(deps.config), 'a setup that installs dependencies')
    : undefined;
  try {
    return await setUp(deps, tenantId, request, valid, signal);
  } finally {
    memory?.release();
  }
}

async function setUp(
  deps: EnvironmentsDeps,
  tenantId: string,
  request: CreateEnvironmentRequest,
  valid: ValidCreateRequest,
  signal: AbortSignal,
): Promise<CreateEnvironmentResponse> {
  const runtimeName = Runtime[valid.runtime] as RuntimeName;
  const runtime = findRuntime(deps.runtimes, runtimeName);
  // Validation accepts exactly the runtimes this service has; anything else is a bug.
  if (runtime === undefined) throw new Error(`no sandbox runtime for ${runtimeName}`);
  const em = deps.db.em();
  const now = new Date();
  const row = em.create(EnvironmentEntity, {
    id: randomUUID(),
    tenantId,
    status: 'PENDING',
    runtime: runtimeName,
    mainModule: valid.mainModule,
    modulePaths: valid.modules.map((module) => module.path),
    modulesSizeBytes: valid.modulesSizeBytes,
    dependencies: valid.dependencies,
    permissions: { allowNet: valid.allowNet, allowEnv: valid.allowEnv },
    ttlSeconds: valid.ttlSeconds,
    labels: request.labels,
    error: null,
    lockfile: null,
    executionCount: 0,
    createdAt: now,
    updatedAt: now,
    lastUsedAt: now,
    deletedAt: null,
  });
  await em.transactional(async (tx) => {
    // One create at a time per tenant from here to the commit, so the count holds.
    await tx.execute('select pg_advisory_xact_lock(hashtext(?))', [`environments:${tenantId}`]);
    // Not counting the new row, which this transaction inserts when it commits.
    const live = await tx.count(
      EnvironmentEntity,
      { tenantId, status: { $ne: 'DELETED' } },
      { flushMode: FlushMode.COMMIT },
    );
    if (live >= deps.config.quotas.environments) {
      tx.remove(row);
      throw new ConnectError(
        `tenant "${tenantId}" has ${live} environments, its quota (TEE_QUOTA_ENVIRONMENTS); delete one first`,
        Code.ResourceExhausted,
      );
    }
  });

  try {
    row.lockfile = (await setUpEnvironment(deps, row.id, valid, runtime, signal)).lockfile;
  } catch (error) {
    const userError = error instanceof InstallFailedError;
    const stopped = signal.aborted;
    if (!userError && !stopped) {
      deps.logger.error({ err: error, environmentId: row.id }, 'setup failed');
    }
    const volume = environmentVolumeName(row.id);
    await deps.sandbox.removeVolume(volume).catch((cleanupError: unknown) => {
      deps.logger.error({ err: cleanupError, volume }, 'removing the volume failed');
    });
    row.status = 'FAILED';
    row.error = userError
      ? error.message
      : stopped
        ? (signal.reason as Error).message
        : 'storing the modules failed';
    row.updatedAt = new Date();
    const environment = toEnvironmentMessage(row);
    const failed = create(EnvironmentFailedSchema, { ...eventHeader(), environment });
    await deps.outbox.flushWith(em, 'environment.failed', failed);
    // A failed install is the caller's to read (like an execution outcome); ours is not.
    if (userError) return create(CreateEnvironmentResponseSchema, { environment });
    throw new ConnectError(`${row.error}; try again`, Code.Unavailable);
  }

  row.status = 'READY';
  row.updatedAt = new Date();
  const environment = toEnvironmentMessage(row);
  const created = create(EnvironmentCreatedSchema, { ...eventHeader(), environment });
  await deps.outbox.flushWith(em, 'environment.created', created);
  deps.logger.info({ environmentId: row.id, modules: valid.modules.length }, 'environment ready');
  return create(CreateEnvironmentResponseSchema, { environment });
}
