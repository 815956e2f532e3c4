import type { SandboxDriver } from '@assist-tee/sandbox';

/**
 * Fails fast, with what to do, when the engine lacks the sandbox runtime or the runtime image:
 * running user code any other way is not an option.
 */
export async function requireSandboxRuntime(
  sandbox: SandboxDriver,
  runtime: string,
  image: string,
): Promise<void> {
  if (!(await sandbox.hasRuntime())) {
    throw new Error(
      `the Docker engine has no "${runtime}" runtime: run "npm run bootstrap" (as root) to configure it`,
    );
  }
  if (!(await sandbox.imageExists(image))) {
    throw new Error(`the runtime image ${image} is missing: run "npm run images" to build it`);
  }
}
