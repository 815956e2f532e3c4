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
import {
  DENO_DEPENDENCY_CACHE_DIR,
  DENO_DEPENDENCY_RUN_FLAGS,
  denoInstallPlan,
} from './dependencies.js';

export const DENO_BINARY_PATH = '/usr/bin/deno';
const TMP_DIR = '/tmp';

// Execution flags, each for a reason:
// --quiet: no "Download"/"Check" diagnostics mixed into the output;
// --no-prompt: a missing permission throws instead of waiting for a terminal;
// --no-config: a deno.json among the user's modules changes nothing;
// --cached-only: nothing is fetched at run time (dependencies come with the environment);
// without dependencies --no-lock/--no-remote/--no-npm make a remote import fail fast with a
//   clear error; with them, the setup's import map, DENO_DIR and lockfile (--frozen) apply;
// --no-code-cache: a V8 code cache in /tmp would die with the sandbox; it only costs tmpfs;
// --allow-read=/code,/runner,/tmp and --allow-write=/tmp: the user's modules, the runner and the
//   sandbox's own size-capped tmpfs, nothing else of the filesystem. The runner writes snippets
//   to /tmp and imports them from there; a handler may use /tmp too, and a session keeps its
//   files there between calls;
// --allow-env: the runner sets the event's env and handlers read it;
// --allow-net=<hosts>: only with the environment's permissions.allow_net, and only those hosts.
// No --allow-run/--allow-ffi/--allow-sys.
const RUN_FLAGS = [
  'run',
  '--quiet',
  '--no-prompt',
  '--no-config',
  '--cached-only',
  '--no-code-cache',
  `--allow-read=${CODE_DIR},${RUNNER_DIR},${TMP_DIR}`,
  `--allow-write=${TMP_DIR}`,
  '--allow-env',
];

// The setup script (ours, not user code) reads and writes the install directory and runs the
// package manager (deno itself); nothing is fetched for the script.
const SETUP_FLAGS = [
  'run',
  '--quiet',
  '--no-prompt',
  '--no-config',
  '--no-lock',
  '--no-remote',
  '--no-npm',
  '--allow-read',
  `--allow-write=${CODE_DIR}`,
  '--allow-env',
  `--allow-run=${DENO_BINARY_PATH}`,
  '--allow-sys',
  SETUP_SCRIPT_PATH,
];

const DENO_ENV = [
  // Deno's cache and $HOME live in the size-capped tmpfs; the root filesystem is read-only.
  'DENO_DIR=/tmp/deno',
  'HOME=/tmp',
  'NO_COLOR=1',
  'DENO_NO_UPDATE_CHECK=1',
  'DENO_NO_PROMPT=1',
  'PATH=/usr/bin',
];

/** The npm package that ships the Linux x64 deno binary, and the binary in it. */
export const denoBinaryPackage = () =>
  npmBinaryPackage('@deno/linux-x64-glibc', 'deno', import.meta.url);

function createDenoImage(): RuntimeImageDefinition {
  const { version, binary } = denoBinaryPackage();
  return {
    runtime: 'deno',
    version,
    binary,
    binaryPath: DENO_BINARY_PATH,
    runnerEntry: new URL('../runner/runner.ts', import.meta.url),
  };
}

/** What the Deno image is built from. */
export const denoImage: RuntimeImageDefinition = createDenoImage();

/** The Deno runtime; its image tag is computed from the files it is built from. */
export const denoRuntime: SandboxRuntime = {
  name: 'deno',
  image: runtimeImageTag(denoImage),
  codeDir: CODE_DIR,
  command: ({ mainModule, allowNet, dependencies }) => [
    ...RUN_FLAGS,
    ...(dependencies ? DENO_DEPENDENCY_RUN_FLAGS : ['--no-lock', '--no-remote', '--no-npm']),
    ...(allowNet.length > 0 ? [`--allow-net=${allowNet.join(',')}`] : []),
    RUNNER_ENTRY_PATH,
    mainModule,
  ],
  // DENO_ENV comes first: a later DENO_DIR wins.
  env: ({ dependencies }) => [
    ...DENO_ENV,
    ...(dependencies ? [`DENO_DIR=${DENO_DEPENDENCY_CACHE_DIR}`] : []),
  ],
  installPlan: denoInstallPlan,
  setupCommand: SETUP_FLAGS,
  setupEnv: DENO_ENV,
};
