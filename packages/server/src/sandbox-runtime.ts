import type { Config } from '@assist-tee/config';
import type { Logger } from '@assist-tee/logger';
import type { SandboxDriver } from '@assist-tee/sandbox';

/**
 * Fails fast, with what to do, when the engine lacks the sandbox runtime or any of the runtime
 * images: running user code any other way is not an option. A runtime that is not gVisor as
 * intended is refused too, unless TEE_ALLOW_INSECURE_RUNTIME is set for development: then the
 * warning this returns is logged now, and should be logged with every piece of user code run
 * and shown by /healthz. Returns undefined when the runtimes are gVisor.
 */
export async function requireSandboxRuntime(
  sandbox: SandboxDriver,
  docker: Config['docker'],
  images: readonly string[],
  logger: Logger,
): Promise<string | undefined> {
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
  const problems = await sandbox.runtimeProblems();
  if (problems.length === 0) return undefined;
  if (!docker.allowInsecureRuntime) {
    throw new Error(
      `refusing to run user code outside gVisor: ${problems.join('; ')}. Run "npm run bootstrap" (as root) to configure runsc, or set TEE_ALLOW_INSECURE_RUNTIME=1 on a development machine`,
    );
  }
  const warning = `INSECURE: user code runs without the gVisor sandbox (${problems.join('; ')}); TEE_ALLOW_INSECURE_RUNTIME is for development only`;
  logger.warn(warning);
  return warning;
}
