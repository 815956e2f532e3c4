import type { Config } from '@assist-tee/config';
import type { Logger } from '@assist-tee/logger';
import type { SandboxDriver } from '@assist-tee/sandbox';
import { NO_AUTH_WARNING } from './process.js';

/**
 * Fails fast, with what to do, when the engine lacks the sandbox runtime or any of the runtime
 * images: running user code any other way is not an option. A runtime that is not gVisor as
 * intended is refused too, unless TEE_ALLOW_INSECURE_RUNTIME is set for development: then its
 * warning is logged now. Returns the warnings of every insecure development setting in force
 * (that one and TEE_ALLOW_NO_AUTH), to be logged with every piece of user code run and shown by
 * /healthz; none in production.
 */
export async function requireSandboxRuntime(
  sandbox: SandboxDriver,
  config: Pick<Config, 'docker' | 'auth'>,
  images: readonly string[],
  logger: Logger,
): Promise<string[]> {
  const { docker } = config;
  if (!(await sandbox.hasRuntime())) {
    throw new Error(
      `the Docker engine has no "${docker.sandboxRuntime}" or "${docker.sandboxNetworkRuntime}" runtime: run "npm run bootstrap" (as root) to configure it`,
    );
  }
  const exists = await Promise.all(images.map((image) => sandbox.imageExists(image)));
  const missing = images.filter((_, index) => !exists[index]);
  if (missing.length > 0) {
    throw new Error(
      `runtime images missing: ${missing.join(', ')}; run "npm run images" to build them`,
    );
  }
  const noAuth = config.auth.allowAnonymous ? [NO_AUTH_WARNING] : [];
  const problems = await sandbox.runtimeProblems();
  if (problems.length === 0) return noAuth;
  if (!docker.allowInsecureRuntime) {
    throw new Error(
      `refusing to run user code outside gVisor: ${problems.join('; ')}. Run "npm run bootstrap" (as root) to configure runsc, or set TEE_ALLOW_INSECURE_RUNTIME=1 on a development machine`,
    );
  }
  const warning = `INSECURE: user code runs without the gVisor sandbox (${problems.join('; ')}); TEE_ALLOW_INSECURE_RUNTIME is for development only`;
  logger.warn(warning);
  return [warning, ...noAuth];
}
