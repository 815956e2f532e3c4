export {
  CODE_DIR,
  findRuntime,
  RUNNER_CORE_PATH,
  RUNNER_DIR,
  RUNNER_ENTRY_PATH,
  SANDBOX_UID,
  SETUP_SCRIPT_PATH,
  type RunOptions,
  type SandboxRuntime,
  type SandboxRuntimeName,
  type SandboxRuntimes,
} from './runtime.js';
export {
  assembleImageContext,
  npmBinaryPackage,
  buildRuntimeImage,
  parseLddOutput,
  RUNNER_CORE_FILE,
  runtimeDockerfile,
  runtimeImageTag,
  SANDBOX_GROUP,
  SANDBOX_PASSWD,
  sharedLibraries,
  type RuntimeImageDefinition,
} from './image.js';
export { runBuildImageCommand } from './build-image-command.js';
export * from './dependencies.js';
export type { SetupRequest, SetupResult } from './setup-protocol.js';
export * from './runner-protocol.js';
