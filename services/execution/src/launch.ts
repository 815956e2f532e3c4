import type { ExecutionLimits } from '@assist-tee/config';
import { type Environment, Runtime, RuntimeSchema } from '@assist-tee/proto';
import { findRuntime, hasDependencies, type SandboxRuntime } from '@assist-tee/runtime-core';
import { caBundleAccess, environmentVolumeName, type SandboxLabels } from '@assist-tee/sandbox';
import { failedPrecondition, type MemoryReservation } from '@assist-tee/server';
import type { ExecutionDeps } from './deps.js';
import { RunnerSandbox } from './runner-sandbox.js';

const MiB = 1024 * 1024;

type LaunchDeps = Pick<
  ExecutionDeps,
  'config' | 'logger' | 'sandbox' | 'runtimes' | 'egress' | 'sandboxMetrics'
>;

/** The runtime an environment uses; FailedPrecondition when this server has no such runtime. */
export function runtimeOf(
  deps: Pick<ExecutionDeps, 'runtimes'>,
  environment: Environment,
): SandboxRuntime {
  const name = Runtime[environment.runtime] ?? String(environment.runtime);
  const runtime = findRuntime(deps.runtimes, name);
  if (runtime === undefined) {
    throw failedPrecondition(
      'RUNTIME_UNAVAILABLE',
      `environment ${JSON.stringify(environment.id)} uses runtime ${name}, which this server cannot run`,
      {
        environmentId: environment.id,
        runtime: RuntimeSchema.value[environment.runtime]?.name ?? environment.runtime,
      },
    );
  }
  return runtime;
}

/**
 * Starts a sandbox for the environment's main module under these limits: its code volume
 * read-only, and with allow_net the egress network and a proxy grant that ends when the
 * sandbox is removed, as does its `memory` reservation. The same for a cold run (labels name
 * the execution) and a warm one.
 */
export function launchSandbox(
  deps: LaunchDeps,
  environment: Environment,
  limits: Pick<ExecutionLimits, 'memoryMb' | 'cpuMillicores'>,
  labels: Omit<SandboxLabels, 'owner' | 'instanceId' | 'environmentId'>,
  memory: MemoryReservation,
): Promise<RunnerSandbox> {
  let runtime: SandboxRuntime;
  try {
    runtime = runtimeOf(deps, environment);
  } catch (error) {
    memory.release();
    throw error;
  }
  const run = {
    mainModule: environment.mainModule,
    allowNet: environment.permissions?.allowNet ?? [],
    dependencies: hasDependencies(environment.dependencies),
  };
  const egress = run.allowNet.length > 0 ? deps.egress.grant(run.allowNet) : undefined;
  const ca = caBundleAccess(egress === undefined ? '' : deps.config.setup.caBundle);
  const { execution } = deps.config;
  return RunnerSandbox.launch({
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
        pidsLimit: execution.pidsLimit,
        tmpfsBytes: execution.tmpfsMb * MiB,
      },
      labels: {
        owner: 'execution',
        instanceId: deps.config.instanceId,
        environmentId: environment.id,
        ...labels,
      },
    },
    startupTimeoutMs: execution.startupTimeoutMs,
    maxIdleOutputBytes: execution.maxima.maxOutputBytes,
    logger: deps.logger,
    observer: deps.sandboxMetrics.observer(environment),
    onRemoved: () => {
      egress?.revoke();
      memory.release();
    },
  });
}
