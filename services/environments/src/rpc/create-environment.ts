import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type HandlerContext } from '@connectrpc/connect';
import { FlushMode } from '@mikro-orm/core';
import { setupMemoryMb } from '@assist-tee/config';
import { EnvironmentEntity, type EnvironmentRow, type RuntimeName } from '@assist-tee/db';
import { eventHeader } from '@assist-tee/events';
import {
  type CreateEnvironmentRequest,
  CreateEnvironmentRequestSchema,
  type CreateEnvironmentResponse,
  CreateEnvironmentResponseSchema,
  EnvironmentCreatedSchema,
  type Environment,
  EnvironmentFailedSchema,
  Runtime,
  SetupPhase,
} from '@assist-tee/proto';
import { findRuntime, hasDependencies } from '@assist-tee/runtime-core';
import { environmentVolumeName } from '@assist-tee/sandbox';
import {
  type MemoryReservation,
  quotaExceeded,
  requireTenant,
  withinLimits,
} from '@assist-tee/server';
import { inSpan } from '@assist-tee/tracing';
import type { EnvironmentsDeps } from '../deps.js';
import { toEnvironmentMessage } from '../environment-message.js';
import { InstallFailedError } from '../setup/install-dependencies.js';
import type { SetupReporter } from '../setup/progress.js';
import { setUpEnvironment } from '../setup/set-up-environment.js';
import { type ValidCreateRequest, validateCreateRequest } from '../validate-create.js';
import { findEnvironment } from './get-environment.js';

/**
 * CreateEnvironment under its request_id: a retry gets the first call's answer (with
 * return_pending, the PENDING environment), and counts against the quota once.
 */
export function createEnvironment(deps: EnvironmentsDeps) {
  const createOnce = createEnvironmentOnce(deps);
  return async (
    request: CreateEnvironmentRequest,
    context: HandlerContext,
  ): Promise<CreateEnvironmentResponse> => {
    const call = {
      rpc: 'CreateEnvironment',
      tenantId: requireTenant(context),
      requestId: request.requestId,
      request: { schema: CreateEnvironmentRequestSchema, message: request },
      stored: CreateEnvironmentResponseSchema,
      signal: context.signal,
    };
    return (await deps.idempotency.run(call, () => createOnce(request, context))).answer;
  };
}

/**
 * Validates the request, stores the modules in a fresh volume, installs the dependencies and
 * records the environment. The row is written PENDING first so a crash mid-setup leaves a
 * trace the reaper can follow; a failure removes the volume and marks the row FAILED. With
 * `return_pending` the call answers once that row is written, and the setup goes on as work in
 * flight (holding its quota and limits), which a stopping service waits for or cuts short.
 */
function createEnvironmentOnce(deps: EnvironmentsDeps) {
  return async (
    request: CreateEnvironmentRequest,
    context: HandlerContext,
  ): Promise<CreateEnvironmentResponse> => {
    const tenantId = requireTenant(context);
    const id = randomUUID();
    let pending!: (response: CreateEnvironmentResponse) => void;
    const admitted = new Promise<CreateEnvironmentResponse>((resolve) => (pending = resolve));
    const setup = withinLimits(
      [() => deps.setupQuota.acquire(tenantId), () => deps.runningSetups.acquire()],
      // Under its id, so that deleting the environment cuts the setup short.
      () =>
        deps.work.run((signal) => admitSetUp(deps, { id, tenantId, request, pending }, signal), id),
    );
    if (!request.returnPending) return setup;
    // Refusals before the row is written are this call's answer. Later failures are on the row
    // (FAILED), and setUp has logged those that are ours.
    setup.catch(() => undefined);
    return Promise.race([admitted, setup]);
  };
}

/**
 * Validates, then holds the memory of an install (if any) while the setup runs, which reports
 * its progress to WatchEnvironment's watchers.
 */
async function admitSetUp(
  deps: EnvironmentsDeps,
  { id, tenantId, request, pending }: Omit<SetUpRequest, 'valid' | 'progress'>,
  signal: AbortSignal,
): Promise<CreateEnvironmentResponse> {
  const progress = deps.setupProgress.begin(id);
  let memory: MemoryReservation | undefined;
  try {
    progress.phase(SetupPhase.VALIDATING);
    const valid = validateCreateRequest(request, {
      ...deps.config.modules,
      ...deps.config.environments,
      maxDependencies: deps.config.setup.maxDependencies,
    });
    // Only an install runs a sandbox; storing the modules does not.
    memory = hasDependencies(valid.dependencies)
      ? await deps.memory.admit(setupMemoryMb(deps.config), 'a setup that installs dependencies')
      : undefined;
    return await setUp(deps, { id, tenantId, request, valid, progress, pending }, signal);
  } finally {
    memory?.release();
    progress.close();
  }
}

interface SetUpRequest {
  id: string;
  tenantId: string;
  request: CreateEnvironmentRequest;
  valid: ValidCreateRequest;
  progress: SetupReporter;
  /** Called with the PENDING environment once its row is written. */
  pending: (response: CreateEnvironmentResponse) => void;
}

async function setUp(
  deps: EnvironmentsDeps,
  { id, tenantId, request, valid, progress, pending }: SetUpRequest,
  signal: AbortSignal,
): Promise<CreateEnvironmentResponse> {
  const runtimeName = Runtime[valid.runtime] as RuntimeName;
  const runtime = findRuntime(deps.runtimes, runtimeName);
  // Validation accepts exactly the runtimes this service has; anything else is a bug.
  if (runtime === undefined) throw new Error(`no sandbox runtime for ${runtimeName}`);
  const em = deps.db.em();
  const now = new Date();
  const row = em.create(EnvironmentEntity, {
    id,
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
      throw quotaExceeded(
        'TENANT_QUOTA_ENVIRONMENTS',
        `tenant "${tenantId}" has ${live} environments, its quota (TEE_QUOTA_ENVIRONMENTS); delete one first`,
        {
          tenant: tenantId,
          limit: deps.config.quotas.environments,
          current: live,
          setting: 'TEE_QUOTA_ENVIRONMENTS',
        },
      );
    }
  });
  pending(create(CreateEnvironmentResponseSchema, { environment: toEnvironmentMessage(row) }));

  try {
    const attributes = { 'assist_tee.environment.id': row.id };
    row.lockfile = (
      await inSpan('environment.setup', { attributes }, () =>
        setUpEnvironment(deps, row.id, valid, runtime, signal, progress),
      )
    ).lockfile;
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
    const deleted = await recordOutcome(deps, row, (tx) =>
      deps.outbox.add(tx, 'environment.failed', failed),
    );
    if (!deleted) deps.metrics.finished(runtime.name, 'failed', Date.now() - now.getTime());
    progress.finish(deleted ?? environment);
    if (deleted) return create(CreateEnvironmentResponseSchema, { environment: deleted });
    // A failed install is the caller's to read (like an execution outcome); ours is not.
    if (userError) return create(CreateEnvironmentResponseSchema, { environment });
    throw new ConnectError(`${row.error}; try again`, Code.Unavailable);
  }

  row.status = 'READY';
  row.updatedAt = new Date();
  const environment = toEnvironmentMessage(row);
  const created = create(EnvironmentCreatedSchema, { ...eventHeader(), environment });
  const deleted = await recordOutcome(deps, row, (tx) =>
    deps.outbox.add(tx, 'environment.created', created),
  );
  if (!deleted) deps.metrics.finished(runtime.name, 'ready', Date.now() - now.getTime());
  progress.finish(deleted ?? environment);
  if (deleted) return create(CreateEnvironmentResponseSchema, { environment: deleted });
  deps.logger.info({ environmentId: row.id, modules: valid.modules.length }, 'environment ready');
  return create(CreateEnvironmentResponseSchema, { environment });
}

/**
 * Writes the setup's outcome (the row's status, error, lockfile) with its event, in one
 * transaction, unless the environment was deleted during the setup (callers with
 * return_pending may delete a PENDING environment): the deletion stands, no outcome event goes
 * out, and this returns the environment as deleted. Undefined when written.
 */
async function recordOutcome(
  deps: EnvironmentsDeps,
  row: EnvironmentRow,
  addEvent: (tx: ReturnType<EnvironmentsDeps['db']['em']>) => void,
): Promise<Environment | undefined> {
  const { status, error, lockfile, updatedAt } = row;
  const written = await deps.db.em().transactional(async (tx) => {
    const updated = await tx.nativeUpdate(
      EnvironmentEntity,
      { id: row.id, status: 'PENDING' },
      { status, error, lockfile, updatedAt },
    );
    if (updated === 0) return false;
    addEvent(tx);
    return true;
  });
  if (written) {
    deps.outbox.publishPending();
    return undefined;
  }
  return toEnvironmentMessage(await findEnvironment(deps.db.em(), row.id, undefined));
}
