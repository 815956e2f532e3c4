import { basename, dirname } from 'node:path';
import type Docker from 'dockerode';
import { extract } from 'tar-stream';
import { isNotFound } from './errors.js';
import { buildTar, validateFilePath, type SandboxFile } from './files.js';
import { type ArchiveLimits, repackArchive } from './archive.js';
import { toDockerLabels, type SandboxLabels } from './labels.js';
import type { DriverContext } from './context.js';
import { removeContainer } from './remove-container.js';
import { requireVolume, volumeMount } from './volumes.js';

export interface WriteFilesOptions {
  /** Any local image: its container is created to reach the volume, never started. */
  image: string;
  volume: string;
  /** Where the volume is mounted in that container; files land under it. */
  target: string;
  files: SandboxFile[];
  labels: SandboxLabels;
  /**
   * Who owns the written files and the volume's root: root (the sandbox can only read them) or
   * the sandbox user, for a setup sandbox that installs dependencies next to them. Executions
   * mount the volume read-only either way.
   */
  owner?: 'root' | 'sandbox';
}

export interface VolumeAccessOptions {
  /** Any local image: its container is created to reach the volume, never started. */
  image: string;
  volume: string;
  /** Where the volume is mounted in that container. */
  target: string;
  labels: SandboxLabels;
}

export interface VolumeUsage {
  files: number;
  bytes: number;
}

/**
 * Writes files into a volume without a shell: puts an in-memory tar into a never-started
 * container that has the volume at `target`.
 */
export async function writeFiles(ctx: DriverContext, options: WriteFilesOptions): Promise<void> {
  // Written from the parent, with the target directory in the tar, so its owner is set too.
  const archive = await buildTar(options.files, options.owner ?? 'root', basename(options.target));
  await withVolumeContainer(ctx, options, async (container) => {
    await container.putArchive(archive, {
      path: dirname(options.target),
      noOverwriteDirNonDir: 'true',
    });
    ctx.logger.debug(
      { volume: options.volume, files: options.files.length, bytes: archive.length },
      'files written',
    );
  });
}

/**
 * Streams an untrusted tar into the volume under `target` (e.g. what a setup sandbox
 * installed), as repackArchive rewrites it: only directories and regular files, modes and
 * owner set here, never more than the limits (ArchiveOverCapError; the upload is aborted and
 * what it wrote stays: the caller removes the volume). Returns what was written.
 */
export async function writeArchive(
  ctx: DriverContext,
  options: VolumeAccessOptions & ArchiveLimits & { archive: NodeJS.ReadableStream },
): Promise<VolumeUsage> {
  return withVolumeContainer(ctx, options, async (container) => {
    const written = await repackArchive(options.archive, options, (archive, abortSignal) =>
      container.putArchive(archive, {
        path: options.target,
        noOverwriteDirNonDir: 'true',
        abortSignal,
      }),
    );
    ctx.logger.debug({ volume: options.volume, ...written }, 'archive written');
    return written;
  });
}

/**
 * Counts the files and bytes under the volume's root, reading its tar through the engine;
 * stops reading as soon as `stopAbove` is passed (the caller only needs to know that).
 */
export async function volumeUsage(
  ctx: DriverContext,
  options: VolumeAccessOptions & { stopAbove: VolumeUsage },
): Promise<VolumeUsage> {
  return withVolumeContainer(ctx, options, async (container) => {
    const usage = { files: 0, bytes: 0 };
    const stream = await container.getArchive({ path: `${options.target}/.` });
    const entries = extract();
    const over = () =>
      usage.files > options.stopAbove.files || usage.bytes > options.stopAbove.bytes;
    stream.pipe(entries);
    for await (const entry of entries) {
      if (entry.header.type === 'file') {
        usage.files += 1;
        usage.bytes += entry.header.size ?? 0;
      }
      entry.resume();
      if (over()) break;
    }
    (stream as unknown as { destroy?: () => void }).destroy?.();
    return usage;
  });
}

/** A file of the volume (path relative to its root), or undefined when there is none. */
export async function readVolumeFile(
  ctx: DriverContext,
  options: VolumeAccessOptions & { path: string; maxBytes: number },
): Promise<Buffer | undefined> {
  validateFilePath(options.path);
  return withVolumeContainer(ctx, options, async (container) => {
    let stream: NodeJS.ReadableStream;
    try {
      stream = await container.getArchive({ path: `${options.target}/${options.path}` });
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    const entries = extract();
    stream.pipe(entries);
    let content: Buffer | undefined;
    for await (const entry of entries) {
      if (entry.header.type === 'file' && content === undefined) {
        if ((entry.header.size ?? 0) > options.maxBytes) {
          throw new Error(`${options.path} is larger than ${options.maxBytes} bytes`);
        }
        const chunks: Buffer[] = [];
        for await (const chunk of entry) chunks.push(chunk as Buffer);
        content = Buffer.concat(chunks);
      } else {
        entry.resume();
      }
    }
    return content;
  });
}

/**
 * Runs `use` with a created, never-started container that mounts the volume: the way to
 * reach a volume's files without a shell. The container is always removed.
 */
async function withVolumeContainer<T>(
  ctx: DriverContext,
  options: VolumeAccessOptions,
  use: (container: Docker.Container) => Promise<T>,
): Promise<T> {
  const { docker, logger, labelled } = ctx;
  await requireVolume(docker, options.volume);
  const container = await docker.createContainer({
    Image: options.image,
    // Never run; Docker only insists that a container has something to run.
    Entrypoint: ['/never-started'],
    Cmd: [],
    Labels: toDockerLabels(labelled(options.labels)),
    NetworkDisabled: true,
    HostConfig: {
      NetworkMode: 'none',
      LogConfig: { Type: 'none', Config: {} },
      Mounts: [volumeMount(options.volume, options.target, false, labelled(options.labels))],
    },
  });
  logger.debug({ containerId: container.id, volume: options.volume }, 'volume container');
  try {
    return await use(container);
  } finally {
    await removeContainer(ctx, container.id).catch((error: unknown) => {
      logger.error({ err: error, containerId: container.id }, 'removing it failed');
    });
  }
}
