import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** How a runtime's sandbox image is named and run. */
export interface RuntimeImage {
  name: 'deno';
  /** The image tag; it changes whenever the runtime version, runner or image layout changes. */
  image: string;
  /** Where the environment volume is mounted. */
  codeDir: '/code';
  /** Arguments after the image's entrypoint that run one execution of `mainModule` (relative to codeDir). */
  command(mainModule: string): string[];
  /** The container's fixed environment. */
  env: string[];
}

export const DENO_CODE_DIR = '/code';
export const DENO_RUNNER_PATH = '/runner/runner.ts';
export const DENO_BINARY_PATH = '/usr/bin/deno';
/** Uid/gid of the sandbox user; matches the driver's container user. */
export const SANDBOX_UID = 1000;

/** The Dockerfile of the runtime image; the build context holds the root filesystem under rootfs/. */
export const DENO_DOCKERFILE = `FROM scratch
COPY rootfs/ /
LABEL dev.assist-tee.runtime=deno
USER ${SANDBOX_UID}:${SANDBOX_UID}
WORKDIR ${DENO_CODE_DIR}
ENTRYPOINT ["${DENO_BINARY_PATH}"]
`;

export const DENO_PASSWD = `root:x:0:0:root:/root:/sbin/nologin
sandbox:x:${SANDBOX_UID}:${SANDBOX_UID}:sandbox:/tmp:/sbin/nologin
`;

export const DENO_GROUP = `root:x:0:
sandbox:x:${SANDBOX_UID}:
`;

// Execution flags, each for a reason:
// --quiet: no "Download"/"Check" diagnostics mixed into the output;
// --no-prompt: a missing permission throws instead of waiting for a terminal;
// --no-config/--no-lock: a deno.json or lock file among the user's modules changes nothing;
// --no-remote/--no-npm/--cached-only: nothing is fetched (there is no network anyway), so a
//   remote import fails fast with a clear error;
// --no-code-cache: a V8 code cache in /tmp would die with the sandbox; it only costs tmpfs;
// --allow-read=/code,/runner: the user's modules and the runner, nothing else of the filesystem;
// --allow-env: the runner sets the event's env and handlers read it.
// No --allow-net/--allow-write/--allow-run/--allow-ffi/--allow-sys.
const RUN_FLAGS = [
  'run',
  '--quiet',
  '--no-prompt',
  '--no-config',
  '--no-lock',
  '--no-remote',
  '--no-npm',
  '--cached-only',
  '--no-code-cache',
  `--allow-read=${DENO_CODE_DIR},/runner`,
  '--allow-env',
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
export function denoBinaryPackage(): { version: string; binary: string; packageDir: string } {
  const require = createRequire(import.meta.url);
  const packageJson = require.resolve('@deno/linux-x64-glibc/package.json');
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string };
  const packageDir = packageJson.slice(0, -'/package.json'.length);
  return { version, binary: `${packageDir}/deno`, packageDir };
}

/** The runner source shipped in this package (runner/runner.ts). */
export const RUNNER_FILE = new URL('../runner/runner.ts', import.meta.url);

function imageTag(runnerSource: string, version: string): string {
  const hash = createHash('sha256')
    .update(runnerSource)
    .update(DENO_DOCKERFILE)
    .update(DENO_PASSWD)
    .update(DENO_GROUP)
    .digest('hex')
    .slice(0, 12);
  return `assist-tee/runtime-deno:${version}-${hash}`;
}

function createDenoRuntime(): RuntimeImage {
  const runnerSource = readFileSync(RUNNER_FILE, 'utf8');
  const { version } = denoBinaryPackage();
  return {
    name: 'deno',
    image: imageTag(runnerSource, version),
    codeDir: DENO_CODE_DIR,
    command: (mainModule) => [...RUN_FLAGS, DENO_RUNNER_PATH, mainModule],
    env: [...DENO_ENV],
  };
}

/** The Deno runtime image; its tag is computed from the files it is built from. */
export const denoRuntime: RuntimeImage = createDenoRuntime();
