import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { EnvironmentEntity } from '@assist-tee/db';
import { eventHeader } from '@assist-tee/events';
import {
  type CreateEnvironmentRequest,
  type CreateEnvironmentResponse,
  CreateEnvironmentResponseSchema,
  EnvironmentCreatedSchema,
  EnvironmentFailedSchema,
} from '@assist-tee/proto';
import { publishAfterCommit } from '@assist-tee/server';
import { environmentVolumeName, type SandboxLabels } from '@assist-tee/sandbox';
import type { EnvironmentsDeps } from '../deps.js';
import { toEnvironmentMessage } from '../environment-message.js';
import { validateCreateRequest } from '../validate-create.js';

const DEFAULT_TTL_SECONDS = 24 * 60 * 60;

/**
 * Validates the request, stores the modules in a fresh volume and records the environment.
 * The row is written PENDING first so a crash mid-setup leaves a trace the reaper can follow;
 * a failure removes the volume and marks the row FAILED.
 */
export function createEnvironment(deps: EnvironmentsDeps) {
  return async (request: CreateEnvironmentRequest): Promise<CreateEnvironmentResponse> => {
    const valid = validateCreateRequest(request, deps.config.modules);
    const em = deps.db.em();
    const now = new Date();
    const row = em.create(EnvironmentEntity, {
      id: randomUUID(),
      status: 'PENDING',
      runtime: 'DENO',
      mainModule: valid.mainModule,
      modulePaths: valid.modules.map((module) => module.path),
      modulesSizeBytes: valid.modulesSizeBytes,
      dependencies: { npm: [], url: [] },
      permissions: { allowNet: [], allowEnv: valid.allowEnv },
      ttlSeconds: request.ttlSeconds === 0 ? DEFAULT_TTL_SECONDS : request.ttlSeconds,
      labels: request.labels,
      error: null,
      lockfile: null,
      executionCount: 0,
      createdAt: now,
      updatedAt: now,
      lastUsedAt: now,
      deletedAt: null,
    });
    await em.flush();

    const volume = environmentVolumeName(row.id);
    const labels: SandboxLabels = {
      owner: 'environments',
      instanceId: deps.config.instanceId,
      environmentId: row.id,
    };
    try {
      await deps.sandbox.createVolume(volume, labels);
      await deps.sandbox.writeFiles({
        image: deps.runtime.image,
        volume,
        target: deps.runtime.codeDir,
        files: valid.modules,
        labels,
      });
    } catch (error) {
      deps.logger.error({ err: error, environmentId: row.id }, 'storing modules failed');
      await deps.sandbox.removeVolume(volume).catch((cleanupError: unknown) => {
        deps.logger.error({ err: cleanupError, volume }, 'removing the volume failed');
      });
      row.status = 'FAILED';
      row.error = 'storing the modules failed';
      row.updatedAt = new Date();
      await em.flush();
      const failed = create(EnvironmentFailedSchema, {
        ...eventHeader(),
        environment: toEnvironmentMessage(row),
      });
      await publishAfterCommit(deps.bus, deps.logger, 'environment.failed', failed);
      throw new ConnectError('storing the modules failed; try again', Code.Unavailable);
    }

    row.status = 'READY';
    row.updatedAt = new Date();
    await em.flush();
    const environment = toEnvironmentMessage(row);
    const created = create(EnvironmentCreatedSchema, { ...eventHeader(), environment });
    await publishAfterCommit(deps.bus, deps.logger, 'environment.created', created);
    deps.logger.info({ environmentId: row.id, modules: valid.modules.length }, 'environment ready');
    return create(CreateEnvironmentResponseSchema, { environment });
  };
}
