import { SetupPhase } from '@assist-tee/proto';
import { hasDependencies, type SandboxRuntime } from '@assist-tee/runtime-core';
import { environmentVolumeName, type SandboxLabels } from '@assist-tee/sandbox';
import type { EnvironmentsDeps } from '../deps.js';
import type { ValidCreateRequest } from '../validate-create.js';
import { installDependencies } from './install-dependencies.js';
import type { SetupReporter } from './progress.js';
import { SETUP_NETWORK } from './setup-network.js';

/**
 * Fills the environment's volume: the modules (root-owned, read-only to the sandbox), then,
 * when there are dependencies, their install in a setup sandbox, reporting the phases and the
 * install's output to `progress`. Returns the lockfile. The caller removes the volume when this
 * throws.
 */
export async function setUpEnvironment(
  deps: EnvironmentsDeps,
  environmentId: string,
  valid: ValidCreateRequest,
  runtime: SandboxRuntime,
  signal: AbortSignal,
  progress: SetupReporter,
): Promise<{ lockfile: string | null }> {
  const volume = environmentVolumeName(environmentId);
  const labels: SandboxLabels = {
    owner: 'environments',
    instanceId: deps.config.instanceId,
    environmentId,
  };
  for (const warning of deps.warnings) deps.logger.warn({ environmentId }, warning);
  progress.phase(SetupPhase.WRITING_MODULES);
  await deps.sandbox.createVolume(volume, labels);
  await deps.sandbox.writeFiles({
    image: runtime.image,
    volume,
    target: runtime.codeDir,
    files: valid.modules,
    labels,
    // Only the service writes the volume (the install arrives as a tar it rewrites): the
    // modules stay root's.
    owner: 'root',
  });
  if (!hasDependencies(valid.dependencies)) return { lockfile: null };
  const started = Date.now();
  const install = installDependencies(
    {
      driver: deps.sandbox,
      setup: deps.config.setup,
      logger: deps.logger.child({ environmentId }),
      signal,
      progress,
    },
    {
      image: runtime.image,
      volume,
      setupCommand: runtime.setupCommand,
      setupEnv: runtime.setupEnv,
      modules: { files: entriesOf(valid.modules), bytes: valid.modulesSizeBytes },
      labels,
      network: SETUP_NETWORK.name,
    },
    runtime.installPlan(valid.dependencies),
  );
  try {
    const { lockfile, installed } = await install;
    deps.metrics.installed(runtime.name, Date.now() - started, installed.bytes);
    return { lockfile };
  } catch (error) {
    deps.metrics.installFailed(runtime.name, Date.now() - started);
    throw error;
  }
}

/** The files and directories the modules make in the volume, as the install caps count them. */
function entriesOf(modules: ValidCreateRequest['modules']): number {
  const directories = new Set<string>();
  for (const { path } of modules) {
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) directories.add(segments.slice(0, i).join('/'));
  }
  return modules.length + directories.size;
}
