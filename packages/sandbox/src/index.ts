export {
  LABEL_PREFIX,
  MANAGED_LABEL,
  fromDockerLabels,
  labelFilter,
  toDockerLabels,
  type SandboxLabels,
} from './labels.js';
export { createDockerClient, type DockerClientOptions } from './client.js';
export { environmentVolumeName } from './names.js';
export { buildTar, SANDBOX_ID, validateFilePath, type SandboxFile } from './files.js';
export type { Sandbox, SandboxExit } from './sandbox.js';
export { ArchiveOverCapError, type ArchiveLimits } from './archive.js';
export {
  SANDBOX_USER,
  SandboxDriver,
  VolumeNotFoundError,
  type BuildImageOptions,
  type NetworkInfo,
  type NetworkOptions,
  type VolumeAccessOptions,
  type VolumeUsage,
  type ListedContainer,
  type ListedVolume,
  type SandboxDriverOptions,
  type SandboxLimits,
  type SandboxSpec,
  type WriteFilesOptions,
} from './driver.js';
export { caBundleAccess, SANDBOX_CA_BUNDLE_PATH } from './ca-bundle.js';
export {
  runtimeProblems,
  sandboxProblems,
  type EngineRuntime,
  type InspectedSandbox,
  type IntendedSandbox,
} from './verify.js';
export {
  listRunscSandboxes,
  removeRunscSandbox,
  type RunscHost,
  type RunscSandbox,
} from './runsc-state.js';
