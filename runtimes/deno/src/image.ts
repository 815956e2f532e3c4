import { execFile } from 'node:child_process';
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
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Logger } from '@assist-tee/logger';
import type { SandboxDriver } from '@assist-tee/sandbox';
import {
  DENO_BINARY_PATH,
  DENO_DOCKERFILE,
  DENO_GROUP,
  DENO_PASSWD,
  DENO_RUNNER_PATH,
  RUNNER_FILE,
  denoBinaryPackage,
  denoRuntime,
} from './runtime.js';

const execFileAsync = promisify(execFile);

/**
 * Builds the Deno runtime image unless it exists, and returns its tag. The image is FROM
 * scratch: the deno binary, the shared libraries it links, /etc/passwd and /etc/group with
 * the sandbox user, the runner, and empty /code and /tmp. No shell, no package manager.
 */
export async function buildDenoImage(driver: SandboxDriver, logger: Logger): Promise<string> {
  const tag = denoRuntime.image;
  if (await driver.imageExists(tag)) {
    logger.debug({ tag }, 'runtime image exists');
    return tag;
  }
  const contextDir = await mkdtemp(join(tmpdir(), 'tee-deno-image-'));
  try {
    const libraries = await assembleDenoContext(contextDir);
    logger.info({ tag, libraries }, 'building the runtime image');
    await driver.buildImage({
      tag,
      contextDir,
      labels: { 'dev.assist-tee.runtime-version': denoBinaryPackage().version },
    });
    return tag;
  } finally {
    await rm(contextDir, { recursive: true, force: true });
  }
}

/** Writes the image's build context (Dockerfile + rootfs/) into `dir`; returns the libraries copied. */
export async function assembleDenoContext(dir: string): Promise<string[]> {
  const rootfs = join(dir, 'rootfs');
  const { binary } = denoBinaryPackage();
  const libraries = await sharedLibraries(binary);

  await placeFile(binary, join(rootfs, DENO_BINARY_PATH), 0o755, true);
  for (const library of libraries) {
    // Copy the file a symlink points to, under the path the loader asks for.
    await placeFile(await realpath(library), join(rootfs, library), 0o755);
  }
  await writeText(join(rootfs, 'etc/passwd'), DENO_PASSWD);
  await writeText(join(rootfs, 'etc/group'), DENO_GROUP);
  await placeFile(fileURLToPath(RUNNER_FILE), join(rootfs, DENO_RUNNER_PATH), 0o644);
  for (const [path, mode] of [
    ['code', 0o755],
    ['tmp', 0o1777],
    ['etc', 0o755],
    ['runner', 0o755],
  ] as const) {
    await mkdir(join(rootfs, path), { recursive: true });
    await chmod(join(rootfs, path), mode);
  }
  await writeText(join(dir, 'Dockerfile'), DENO_DOCKERFILE);
  return libraries;
}

/** The absolute paths of the shared libraries (and the loader) a binary links, from ldd. */
export async function sharedLibraries(binary: string): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync('ldd', [binary]));
  } catch (error) {
    throw new Error(`running ldd on ${binary} failed (is libc-bin installed?)`, { cause: error });
  }
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
 * that mode and shares the filesystem: the deno binary is ~95 MB.
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
