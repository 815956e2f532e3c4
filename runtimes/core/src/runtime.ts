import { SANDBOX_ID } from '@assist-tee/sandbox';
import type { Dependencies, InstallPlan } from './dependencies.js';

export type SandboxRuntimeName = 'deno' | 'bun';

/** What one execution runs. */
export interface RunOptions {
  /** The main module, relative to codeDir. */
  mainModule: string;
  /** Hosts the handler may reach. The runtime's own permissions only: the sandbox's network
   * is decided elsewhere. */
  allowNet: string[];
  /** Whether the environment has installed dependencies in its volume. */
  dependencies: boolean;
}

/** How a runtime's sandbox image is named and run. */
export interface SandboxRuntime {
  name: SandboxRuntimeName;
  /** The image tag; it changes whenever the runtime version, runner or image layout changes. */
  image: string;
  /** Where the environment volume is mounted. */
  codeDir: '/code';
  /** Arguments after the image's entrypoint that run one execution. */
  command(run: RunOptions): string[];
  /** The container's environment for one execution. */
  env(run: RunOptions): string[];
  /** How setup installs `dependencies` into the environment's volume. */
  installPlan(dependencies: Dependencies): InstallPlan;
  /** Arguments after the image's entrypoint that run the setup script (SETUP_SCRIPT_PATH); the
   * request goes after them. */
  setupCommand: string[];
  /** The setup script's own environment; the service adds registry, CA bundle and proxy settings. */
  setupEnv: string[];
}

/** Every runtime a service can run, by name. */
export type SandboxRuntimes = Readonly<Record<SandboxRuntimeName, SandboxRuntime>>;

/** The runtime called `name` in any case ('BUN', as the API and the database spell it), if any. */
export function findRuntime(runtimes: SandboxRuntimes, name: string): SandboxRuntime | undefined {
  const key = name.toLowerCase();
  return Object.hasOwn(runtimes, key) ? runtimes[key as SandboxRuntimeName] : undefined;
}

export const CODE_DIR = '/code';
/** The runner's directory in every image: the runtime's entry and the shared core. */
export const RUNNER_DIR = '/runner';
export const RUNNER_ENTRY_PATH = `${RUNNER_DIR}/runner.ts`;
export const RUNNER_CORE_PATH = `${RUNNER_DIR}/core.ts`;
/** The setup script (runner/setup.ts of this package) in every image. */
export const SETUP_SCRIPT_PATH = `${RUNNER_DIR}/setup.ts`;
/** Uid/gid of the sandbox user in the images: the one the driver runs containers as. */
export const SANDBOX_UID = SANDBOX_ID;
