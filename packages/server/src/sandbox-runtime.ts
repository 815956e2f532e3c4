import type { SandboxDriver } from '@assist-tee/sandbox';

/**
 * Fails fast, with what to do, when the engine lacks the sandbox runtime or any of the runtime
 * images: running user code any other way is not an option.
 */
export async function requireSandboxRuntime(
  sandbox: SandboxDriver,
  runtime: string,
  images: readonly string[],
): Promise<void> {
  if (!(await sandbox.hasRuntime())) {
    throw new Error(
      `the Docker engine has no "${runtime}" runtime: run "npm run bootstrap" (as root) to configure it`,
    );
  }
  const exists = await Promise.all(images.map((image) => sandbox.imageExists(image)));
  const missing = images.filter((_, index) => !exists[index]);
  if (missing.length > 0) {
    throw new Error(
      `runtime images missing: ${missing.join(', ')}; run "npm run images" to build them`,
    );
  }
}
