import {
  CODE_DIR,
  npmBinaryPackage,
  RUNNER_DIR,
  RUNNER_ENTRY_PATH,
  type RuntimeImageDefinition,
  SETUP_SCRIPT_PATH,
  runtimeImageTag,
  type SandboxRuntime,
} from '@assist-tee/runtime-core';
import { bunInstallPlan } from './dependencies.js';

export const BUN_BINARY_PATH = '/usr/bin/bun';
const BUNFIG_PATH = `${RUNNER_DIR}/bunfig.toml`;
const TSCONFIG_PATH = `${RUNNER_DIR}/tsconfig.json`;

// The image's Bun config, used instead of any bunfig.toml among the user's modules.
const BUNFIG = `# The sandbox's Bun config (bun run --config=${BUNFIG_PATH}).
# Nothing is installed at run time: dependencies come with the environment.
telemetry = false

[install]
auto = "disable"
`;

// An empty tsconfig, used instead of any tsconfig.json among the user's modules.
const TSCONFIG = '{}\n';

// Execution flags, each for a reason:
// --no-install: never install a missing import at run time. Without it Bun fetches packages
//   from npm whenever there is no node_modules (there is no network anyway: fail fast and clearly);
// --config=/runner/bunfig.toml: Bun reads ./bunfig.toml, i.e. /code/bunfig.toml, otherwise;
//   one among the user's modules could preload code before the runner (and read the nonce);
// --tsconfig-override=/runner/tsconfig.json: a tsconfig.json among the user's modules (paths,
//   JSX, decorators) changes nothing, as deno.json does not under deno's --no-config;
// --no-env-file: no .env file is loaded: the environment is the image's and the event's;
// --no-addons: no native addons (process.dlopen, the "node-addons" export condition), as deno
//   has no --allow-ffi. Bun has no permission model: allow_net does not apply here, the
//   sandbox's network does.
// No --smol: it trades speed for memory, and the memory limit is enforced from outside anyway.
const RUN_FLAGS = [
  'run',
  '--no-install',
  `--config=${BUNFIG_PATH}`,
  `--tsconfig-override=${TSCONFIG_PATH}`,
  '--no-env-file',
  '--no-addons',
];

// The setup script runs with the image's config, and no .env file, like an execution.
const SETUP_FLAGS = [
  'run',
  '--no-install',
  `--config=${BUNFIG_PATH}`,
  '--no-env-file',
  SETUP_SCRIPT_PATH,
];

const BUN_ENV = [
  // $HOME and every cache live in the size-capped tmpfs; the root filesystem is read-only.
  'HOME=/tmp',
  'TMPDIR=/tmp',
  // No transpiler cache: it would die with the sandbox, and only cost tmpfs and time.
  'BUN_RUNTIME_TRANSPILER_CACHE_PATH=0',
  'BUN_INSTALL_CACHE_DIR=/tmp/bun-install-cache',
  // No telemetry or crash reports sent anywhere.
  'DO_NOT_TRACK=1',
  'NO_COLOR=1',
  'PATH=/usr/bin',
];

/** The npm package that ships the Linux x64 bun binary, and the binary in it. */
export const bunBinaryPackage = () =>
  npmBinaryPackage('@oven/bun-linux-x64', 'bin/bun', import.meta.url);

function createBunImage(): RuntimeImageDefinition {
  const { version, binary } = bunBinaryPackage();
  return {
    runtime: 'bun',
    version,
    binary,
    binaryPath: BUN_BINARY_PATH,
    runnerEntry: new URL('../runner/runner.ts', import.meta.url),
    runnerFiles: { 'bunfig.toml': BUNFIG, 'tsconfig.json': TSCONFIG },
  };
}

/** What the Bun image is built from. */
export const bunImage: RuntimeImageDefinition = createBunImage();

/** The Bun runtime; its image tag is computed from the files it is built from. */
export const bunRuntime: SandboxRuntime = {
  name: 'bun',
  image: runtimeImageTag(bunImage),
  codeDir: CODE_DIR,
  // allowNet is for the runtime's own permissions, and Bun has none.
  command: ({ mainModule }) => [...RUN_FLAGS, RUNNER_ENTRY_PATH, mainModule],
  // Dependencies are in /code/node_modules, where Bun's resolution looks anyway.
  env: () => [...BUN_ENV],
  installPlan: (dependencies) => bunInstallPlan(dependencies, BUNFIG_PATH),
  setupCommand: SETUP_FLAGS,
  setupEnv: BUN_ENV,
};
