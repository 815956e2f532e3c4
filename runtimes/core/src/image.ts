import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import {
  chmod,
  copyFile,
  link,
  mkdir,
  mkdtemp,
  realpath,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '@assist-tee/logger';
import type { SandboxDriver } from '@assist-tee/sandbox';
import {
  CODE_DIR,
  RUNNER_CORE_PATH,
  RUNNER_DIR,
  RUNNER_ENTRY_PATH,
  SANDBOX_UID,
  SETUP_SCRIPT_PATH,
  type SandboxRuntimeName,
} from './runtime.js';

const execFileAsync = promisify(execFile);

/** What a runtime's sandbox image is made of. */
export interface RuntimeImageDefinition {
  runtime: SandboxRuntimeName;
  /** The runtime's version (its npm package's): part of the tag, and a label. */
  version: string;
  /** The runtime's binary on this machine. */
  binary: string;
  /** Where the binary goes in the image; it is the entrypoint. */
  binaryPath: string;
  /** The runtime's runner entry on this machine: it goes to /runner/runner.ts, next to the
   * shared core at /runner/core.ts, which it imports as ./core.ts. */
  runnerEntry: URL;
  /** More files for /runner, by name (e.g. the runtime's own config file). */
  runnerFiles?: Readonly<Record<string, string>>;
}

/** The runner's runtime-agnostic core (runner/core.ts of this package). */
export const RUNNER_CORE_FILE = new URL('../runner/core.ts', import.meta.url);
/** The setup script (runner/setup.ts of this package). */
export const SETUP_SCRIPT_FILE = new URL('../runner/setup.ts', import.meta.url);

export const SANDBOX_PASSWD = `root:x:0:0:root:/root:/sbin/nologin
sandbox:x:${SANDBOX_UID}:${SANDBOX_UID}:sandbox:/tmp:/sbin/nologin
`;

export const SANDBOX_GROUP = `root:x:0:
sandbox:x:${SANDBOX_UID}:
`;

/** The image's Dockerfile; the build context holds the root filesystem under rootfs/. */
export function runtimeDockerfile(definition: RuntimeImageDefinition): string {
  return `FROM scratch
COPY rootfs/ /
LABEL dev.assist-tee.runtime=${definition.runtime}
USER ${SANDBOX_UID}:${SANDBOX_UID}
WORKDIR ${CODE_DIR}
ENTRYPOINT ["${definition.binaryPath}"]
`;
}

/** The image tag: the runtime's version and a hash of every file the image is built from
 * (except the binary and its libraries, which the version stands for). */
export function runtimeImageTag(definition: RuntimeImageDefinition): string {
  const hash = createHash('sha256');
  for (const [name, content] of runnerFiles(definition)) hash.update(`${name}\0${content}\0`);
  hash.update(runtimeDockerfile(definition)).update(SANDBOX_PASSWD).update(SANDBOX_GROUP);
  return `assist-tee/runtime-${definition.runtime}:${definition.version}-${hash.digest('hex').slice(0, 12)}`;
}

/**
 * Builds the runtime's image unless it exists, and returns its tag. The image is FROM scratch:
 * the binary, the shared libraries it links, /etc/passwd and /etc/group with the sandbox user,
 * the runner and the setup script in /runner, and empty /code and /tmp. No shell, no package
 * manager.
 */
export async function buildRuntimeImage(
  driver: SandboxDriver,
  logger: Logger,
  definition: RuntimeImageDefinition,
): Promise<string> {
  const tag = runtimeImageTag(definition);
  if (await driver.imageExists(tag)) {
    logger.debug({ tag }, 'runtime image exists');
    return tag;
  }
  const contextDir = await mkdtemp(join(tmpdir(), `tee-${definition.runtime}-image-`));
  try {
    const libraries = await assembleImageContext(definition, contextDir);
    logger.info({ tag, libraries }, 'building the runtime image');
    await driver.buildImage({
      tag,
      contextDir,
      labels: { 'dev.assist-tee.runtime-version': definition.version },
    });
    return tag;
  } finally {
    await rm(contextDir, { recursive: true, force: true });
  }
}

/** Writes the image's build context (Dockerfile + rootfs/) into `dir`; returns the libraries copied. */
export async function assembleImageContext(
  definition: RuntimeImageDefinition,
  dir: string,
): Promise<string[]> {
  const rootfs = join(dir, 'rootfs');
  const libraries = await sharedLibraries(definition.binary);

  await placeFile(definition.binary, join(rootfs, definition.binaryPath), 0o755, true);
  for (const library of libraries) {
    // Copy the file a symlink points to, under the path the loader asks for.
    await placeFile(await realpath(library), join(rootfs, library), 0o755);
  }
  await writeText(join(rootfs, 'etc/passwd'), SANDBOX_PASSWD);
  await writeText(join(rootfs, 'etc/group'), SANDBOX_GROUP);
  for (const [path, content] of runnerFiles(definition)) {
    await writeText(join(rootfs, path), content);
  }
  for (const [path, mode] of [
    [CODE_DIR, 0o755],
    ['/tmp', 0o1777],
    ['/etc', 0o755],
    [RUNNER_DIR, 0o755],
  ] as const) {
    await mkdir(join(rootfs, path), { recursive: true });
    await chmod(join(rootfs, path), mode);
  }
  await writeText(join(dir, 'Dockerfile'), runtimeDockerfile(definition));
  return libraries;
}

/** Every file of /runner with its content, by absolute path in the image, sorted. */
function runnerFiles(definition: RuntimeImageDefinition): [string, string][] {
  const files: [string, string][] = [
    [RUNNER_CORE_PATH, readFileSync(RUNNER_CORE_FILE, 'utf8')],
    [RUNNER_ENTRY_PATH, readFileSync(definition.runnerEntry, 'utf8')],
    [SETUP_SCRIPT_PATH, readFileSync(SETUP_SCRIPT_FILE, 'utf8')],
  ];
  for (const [name, content] of Object.entries(definition.runnerFiles ?? {})) {
    const path = `${RUNNER_DIR}/${name}`;
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(name) || files.some(([taken]) => taken === path)) {
      throw new Error(`runner file ${JSON.stringify(name)} is not a plain, unused file name`);
    }
    files.push([path, content]);
  }
  return files.sort(([a], [b]) => a.localeCompare(b));
}

/** The absolute paths of the shared libraries (and the loader) a binary links, from ldd. */
export async function sharedLibraries(binary: string): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync('ldd', [binary]));
  } catch (error) {
    throw new Error(`running ldd on ${binary} failed (is libc-bin installed?)`, { cause: error });
  }
  return parseLddOutput(stdout, binary);
}

/** The library paths in ldd's output; throws on a library ldd could not find. */
export function parseLddOutput(stdout: string, binary: string): string[] {
  const libraries = new Set<string>();
  for (const line of stdout.split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const match = /=>\s*(\/\S+)|^\s*(\/\S+)\s+\(/.exec(line);
    const path = match?.[1] ?? match?.[2];
    if (path !== undefined) libraries.add(path);
    else if (line.includes('not found')) throw new Error(`ldd: ${line.trim()}`);
  }
  if (libraries.size === 0) throw new Error(`ldd found no libraries for ${binary}:\n${stdout}`);
  return [...libraries].sort();
}

/**
 * Copies a file with an exact mode. `allowLink` hard-links instead when the source already has
 * that mode and shares the filesystem: runtime binaries are around 100 MB.
 */
async function placeFile(
  source: string,
  target: string,
  mode: number,
  allowLink = false,
): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  if (allowLink && ((await stat(source)).mode & 0o7777) === mode) {
    try {
      await link(source, target);
      return;
    } catch {
      // Another filesystem: copy below.
    }
  }
  await copyFile(source, target);
  await chmod(target, mode);
}

async function writeText(path: string, content: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content, { mode: 0o644 });
  await chmod(path, 0o644);
}

/**
 * The version and binary of an npm package that ships a runtime binary, resolved the way the
 * calling module (`from`, its import.meta.url) sees its dependencies.
 */
export function npmBinaryPackage(
  packageName: string,
  binaryPath: string,
  from: string,
): { version: string; binary: string } {
  const packageJson = createRequire(from).resolve(`${packageName}/package.json`);
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string };
  return { version, binary: join(dirname(packageJson), binaryPath) };
}
