import { randomUUID } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { ExecutionEntity } from '@assist-tee/db';
import { eventHeader } from '@assist-tee/events';
import {
  type Environment,
  EnvironmentStatus,
  type ExecuteRequest,
  type Execution,
  ExecutionFinishedSchema,
  ExecutionStartedSchema,
  Runtime,
} from '@assist-tee/proto';
import { findRuntime, hasDependencies } from '@assist-tee/runtime-core';
import { caBundleAccess, environmentVolumeName } from '@assist-tee/sandbox';
import { invalidArgument, notFound } from '@assist-tee/server';
import type { ExecutionDeps } from './deps.js';
import { jsonFromValue, toExecutionMessage } from './execution-message.js';
import { resolveLimits } from './limits.js';
import { runHandler, type RunOutcome } from './run-handler.js';
import type { LogLine } from './runner-protocol.js';

const MiB = 1024 * 1024;

/** The fields Execute and ExecuteStream share. */
export type ExecuteInput = Pick<ExecuteRequest, 'environmentId' | 'data' | 'env' | 'limits'>;

/**
 * Runs one execution end to end: validates, records it RUNNING, runs the handler in a fresh
 * sandbox, records the outcome, and publishes execution.started / execution.finished.
 */
export async function execute(
  deps: ExecutionDeps,
  input: ExecuteInput,
  onLog?: (line: LogLine) => void,
): Promise<Execution> {
  const startedAt = Date.now();
  const limits = resolveLimits(input.limits, deps.config.execution);
  const data = jsonFromValue(input.data);
  const eventBytes = Buffer.byteLength(JSON.stringify({ data, env: input.env }));
  if (eventBytes > deps.config.execution.maxEventBytes) {
    throw invalidArgument(
      'data',
      `the event is ${eventBytes} bytes; the maximum is ${deps.config.execution.maxEventBytes}`,
    );
  }
  const environment = await readyEnvironment(deps, input.environmentId);
  const runtimeName = Runtime[environment.runtime] ?? String(environment.runtime);
  const runtime = findRuntime(deps.runtimes, runtimeName);
  if (runtime === undefined) {
    throw new ConnectError(
      `environment ${JSON.stringify(environment.id)} uses runtime ${runtimeName}, which this server cannot run`,
      Code.FailedPrecondition,
    );
  }
  const allowed = new Set(environment.permissions?.allowEnv ?? []);
  for (const name of Object.keys(input.env)) {
    if (!allowed.has(name)) {
      throw invalidArgument(
        `env[${JSON.stringify(name)}]`,
        "is not in the environment's permissions.allow_env",
      );
    }
  }

  const em = deps.db.em();
  const row = em.create(ExecutionEntity, {
    id: randomUUID(),
    environmentId: environment.id,
    status: 'RUNNING',
    result: null,
    error: null,
    logs: [],
    outputTruncated: false,
    exitCode: null,
    durationMs: null,
    limits,
    warm: false,
    instanceId: deps.config.instanceId,
    createdAt: new Date(startedAt),
    finishedAt: null,
  });
  const started = create(ExecutionStartedSchema, {
    ...eventHeader(),
    executionId: row.id,
    environmentId: environment.id,
  });
  await deps.outbox.flushWith(em, 'execution.started', started);

  const run = {
    mainModule: environment.mainModule,
    allowNet: environment.permissions?.allowNet ?? [],
    dependencies: hasDependencies(environment.dependencies),
  };
  // With allow_net the sandbox joins the egress network and may use the proxy for this run only.
  const egress = run.allowNet.length > 0 ? deps.egress.grant(run.allowNet) : undefined;
  const ca = caBundleAccess(egress === undefined ? '' : deps.config.setup.caBundle);
  let outcome: RunOutcome;
  try {
    outcome = await runHandler({
      driver: deps.sandbox,
      spec: {
        image: runtime.image,
        cmd: runtime.command(run),
        env: [...runtime.env(run), ...(egress?.env ?? []), ...ca.env],
        network: egress?.network,
        hosts: egress?.hosts,
        files: ca.files,
        volume: {
          name: environmentVolumeName(environment.id),
          target: runtime.codeDir,
          readOnly: true,
        },
        limits: {
          memoryBytes: limits.memoryMb * MiB,
          nanoCpus: limits.cpuMillicores * 1_000_000,
          pidsLimit: deps.config.execution.pidsLimit,
          tmpfsBytes: deps.config.execution.tmpfsMb * MiB,
        },
        labels: {
          owner: 'execution',
          instanceId: deps.config.instanceId,
          environmentId: environment.id,
          executionId: row.id,
        },
      },
      event: {
        data,
        env: input.env,
        context: {
          executionId: row.id,
          environmentId: environment.id,
          timeoutMs: limits.timeoutMs,
        },
      },
      timeoutMs: limits.timeoutMs,
      startupTimeoutMs: deps.config.execution.startupTimeoutMs,
      maxOutputBytes: limits.maxOutputBytes,
      logger: deps.logger.child({ executionId: row.id }),
      onLog,
    });
  } catch (error) {
    deps.logger.error({ err: error, executionId: row.id }, 'starting the sandbox failed');
    outcome = {
      status: 'SANDBOX_ERROR',
      result: null,
      error: { name: 'SandboxFailed', message: 'the sandbox could not be started', stack: '' },
      logs: [],
      outputTruncated: false,
      exitCode: -1,
    };
  } finally {
    egress?.revoke();
  }
  if (await deletedUnderIt(deps, environment.id, outcome)) {
    outcome = {
      ...outcome,
      status: 'SANDBOX_ERROR',
      result: null,
      error: {
        name: 'EnvironmentDeleted',
        message: 'the environment was deleted while this execution ran; its sandbox was removed',
        stack: '',
      },
    };
  }

  const finishedAt = new Date();
  Object.assign(row, {
    status: outcome.status,
    result: outcome.result,
    error: outcome.error,
    logs: outcome.logs,
    outputTruncated: outcome.outputTruncated,
    exitCode: outcome.exitCode,
    durationMs: finishedAt.getTime() - startedAt,
    finishedAt,
  });
  const finished = create(ExecutionFinishedSchema, {
    ...eventHeader(),
    execution: toExecutionMessage(row, { brief: true }),
  });
  await deps.outbox.flushWith(em, 'execution.finished', finished);
  deps.logger.info(
    { executionId: row.id, status: row.status, durationMs: row.durationMs },
    'execution finished',
  );
  return toExecutionMessage(row);
}

/**
 * Whether the sandbox died because its environment was deleted meanwhile (DeleteEnvironment
 * removes the sandboxes running on it). Only a sandbox that died without a reason of its own
 * is looked into, so ordinary outcomes cost no extra call.
 */
async function deletedUnderIt(
  deps: ExecutionDeps,
  environmentId: string,
  outcome: RunOutcome,
): Promise<boolean> {
  const unexplained = ['ProcessExited', 'SandboxFailed'].includes(outcome.error?.name ?? '');
  if (!unexplained) return false;
  try {
    const { environment } = await deps.environments.getEnvironment({ id: environmentId });
    return environment?.status === EnvironmentStatus.DELETED;
  } catch (error) {
    return ConnectError.from(error).code === Code.NotFound;
  }
}

async function readyEnvironment(deps: ExecutionDeps, id: string): Promise<Environment> {
  if (id === '') throw invalidArgument('environment_id', 'is required');
  let environment: Environment | undefined;
  try {
    environment = (await deps.environments.getEnvironment({ id })).environment;
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.NotFound) {
      throw notFound('environment', id);
    }
    throw error;
  }
  if (environment === undefined || environment.status === EnvironmentStatus.DELETED) {
    throw notFound('environment', id);
  }
  if (environment.status !== EnvironmentStatus.READY) {
    throw new ConnectError(
      `environment ${JSON.stringify(id)} is ${EnvironmentStatus[environment.status]}, not READY`,
      Code.FailedPrecondition,
    );
  }
  return environment;
}
