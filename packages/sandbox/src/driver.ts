import { readdir, readFile, lstat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Socket } from 'node:net';
import type Docker from 'dockerode';
import { pack } from 'tar-stream';
import type { Logger } from '@assist-tee/logger';
import { dockerMessage, dockerStatus, isNotFound } from './errors.js';
import { buildTar, type SandboxFile } from './files.js';
import { labelFilter, toDockerLabels, type SandboxLabels } from './labels.js';
import { SandboxHandle, type Sandbox } from './sandbox.js';

export interface SandboxDriverOptions {
  docker: Docker;
  logger: Logger;
  /** The engine's runtime for sandboxes, e.g. 'runsc'. */
  runtime: string;
}

export interface SandboxLimits {
  memoryBytes: number;
  nanoCpus: number;
  pidsLimit: number;
  tmpfsBytes: number;
}

export interface SandboxSpec {
  image: string;
  /** Arguments after the image's entrypoint. */
  cmd: string[];
  /** The container's whole environment ('K=V'); nothing of the host's is inherited. */
  env: string[];
  volume: { name: string; target: string; readOnly: boolean };
  limits: SandboxLimits;
  labels: SandboxLabels;
}

export interface BuildImageOptions {
  tag: string;
  /** A directory with a Dockerfile at its root; sent to the engine as the build context. */
  contextDir: string;
  labels?: Record<string, string>;
}

export interface WriteFilesOptions {
  /** Any local image: its container is created to reach the volume, never started. */
  image: string;
  volume: string;
  /** Where the volume is mounted in that container; files land under it. */
  target: string;
  files: SandboxFile[];
  labels: SandboxLabels;
}

export interface ListedContainer {
  id: string;
  labels: Record<string, string>;
  state: string;
}

export interface ListedVolume {
  name: string;
  labels: Record<string, string>;
}

/** The volume a sandbox or a write needs does not exist (e.g. its environment was deleted). */
export class VolumeNotFoundError extends Error {
  override readonly name = 'VolumeNotFoundError';
  constructor(readonly volume: string) {
    super(`volume ${volume} does not exist`);
  }
}

/** The sandbox user: unprivileged, and the same in every runtime image. */
export const SANDBOX_USER = '1000:1000';

/** /dev/shm is a memory-backed tmpfs in the sandbox; nothing there needs more than this. */
const SHM_BYTES = 1024 * 1024;

/** The only code that talks to the Docker engine: images, volumes and sandbox containers. */
export class SandboxDriver {
  private readonly docker: Docker;
  private readonly logger: Logger;
  private readonly runtime: string;

  constructor(options: SandboxDriverOptions) {
    this.docker = options.docker;
    this.logger = options.logger;
    this.runtime = options.runtime;
  }

  /** Throws if the engine is unreachable. */
  async ping(): Promise<void> {
    await this.docker.ping();
  }

  /** Whether the engine has the configured sandbox runtime. */
  async hasRuntime(): Promise<boolean> {
    const info = (await this.docker.info()) as { Runtimes?: Record<string, unknown> };
    return Object.hasOwn(info.Runtimes ?? {}, this.runtime);
  }

  async imageExists(tag: string): Promise<boolean> {
    try {
      await this.docker.getImage(tag).inspect();
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /** Builds an image from a local context; no registry is involved. Rejects with the build's error text. */
  async buildImage(options: BuildImageOptions): Promise<void> {
    const started = Date.now();
    const context = packDirectory(options.contextDir);
    const response = await this.docker.buildImage(context, {
      t: options.tag,
      labels: options.labels ?? {},
      rm: true,
      forcerm: true,
    });
    const output: string[] = [];
    let failure: string | undefined;
    await new Promise<void>((resolve, reject) => {
      let pending = '';
      response.on('data', (chunk: Buffer) => {
        pending += chunk.toString('utf8');
        let newline: number;
        while ((newline = pending.indexOf('\n')) !== -1) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          if (line === '') continue;
          const event = JSON.parse(line) as { stream?: string; error?: string };
          if (event.stream !== undefined) output.push(event.stream);
          if (event.error !== undefined) failure ??= event.error;
        }
      });
      response.on('end', resolve);
      response.on('error', reject);
    });
    if (failure !== undefined) {
      throw new Error(`building ${options.tag} failed: ${failure}\n${output.join('').trim()}`);
    }
    this.logger.info({ tag: options.tag, ms: Date.now() - started }, 'image built');
  }

  async createVolume(name: string, labels: SandboxLabels): Promise<void> {
    await this.docker.createVolume({ Name: name, Labels: toDockerLabels(labels) });
    this.logger.debug({ volume: name }, 'volume created');
  }

  /** Removes a volume; a missing one is fine. */
  async removeVolume(name: string): Promise<void> {
    try {
      await this.docker.getVolume(name).remove();
      this.logger.debug({ volume: name }, 'volume removed');
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }

  /**
   * Writes files into a volume without a shell: creates (never starts) a container of `image`
   * with the volume at `target`, puts an in-memory tar into it, and removes that container.
   */
  async writeFiles(options: WriteFilesOptions): Promise<void> {
    const archive = await buildTar(options.files);
    await this.requireVolume(options.volume);
    const container = await this.docker.createContainer({
      Image: options.image,
      // Never run; Docker only insists that a container has something to run.
      Entrypoint: ['/never-started'],
      Cmd: [],
      Labels: toDockerLabels(options.labels),
      NetworkDisabled: true,
      HostConfig: {
        NetworkMode: 'none',
        LogConfig: { Type: 'none', Config: {} },
        Mounts: [volumeMount(options.volume, options.target, false, options.labels)],
      },
    });
    this.logger.debug(
      { containerId: container.id, volume: options.volume },
      'writer container created',
    );
    try {
      await container.putArchive(archive, { path: options.target, noOverwriteDirNonDir: 'true' });
      this.logger.debug(
        { volume: options.volume, files: options.files.length, bytes: archive.length },
        'files written',
      );
    } finally {
      await this.docker
        .getContainer(container.id)
        .remove({ force: true })
        .catch((error: unknown) => {
          if (!isNotFound(error)) {
            this.logger.error(
              { err: error, containerId: container.id },
              'removing the writer failed',
            );
          }
        });
    }
  }

  /**
   * Creates a sandbox container (runtime, no network, read-only root, capped /tmp, no
   * capabilities, limits), attaches stdin/stdout/stderr before starting it, and starts it.
   * A container that fails to attach or start is removed before the error is rethrown.
   */
  async start(spec: SandboxSpec): Promise<Sandbox> {
    const { limits, volume } = spec;
    await this.requireVolume(volume.name);
    const container = await this.docker.createContainer({
      Image: spec.image,
      Cmd: spec.cmd,
      Env: spec.env,
      User: SANDBOX_USER,
      WorkingDir: volume.target,
      // Not the container id: user code learns nothing about the host from it.
      Hostname: 'sandbox',
      Labels: toDockerLabels(spec.labels),
      Tty: false,
      OpenStdin: true,
      StdinOnce: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      NetworkDisabled: true,
      HostConfig: {
        Runtime: this.runtime,
        NetworkMode: 'none',
        ReadonlyRootfs: true,
        Tmpfs: { '/tmp': `rw,nosuid,nodev,noexec,size=${limits.tmpfsBytes}` },
        ShmSize: SHM_BYTES,
        Mounts: [volumeMount(volume.name, volume.target, volume.readOnly, spec.labels)],
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        Memory: limits.memoryBytes,
        MemorySwap: limits.memoryBytes,
        NanoCpus: limits.nanoCpus,
        PidsLimit: limits.pidsLimit,
        // json-file logs have no size cap; output is read through the attach instead.
        LogConfig: { Type: 'none', Config: {} },
      },
    });
    this.logger.debug(
      { containerId: container.id, image: spec.image },
      'sandbox container created',
    );
    let socket: Socket | undefined;
    try {
      socket = (await container.attach({
        stream: true,
        stdin: true,
        stdout: true,
        stderr: true,
        hijack: true,
      })) as Socket;
      const sandbox = new SandboxHandle({
        container,
        socket,
        docker: this.docker,
        logger: this.logger,
      });
      await container.start();
      sandbox.watchExit();
      this.logger.debug({ containerId: container.id }, 'sandbox container started');
      return sandbox;
    } catch (error) {
      socket?.destroy();
      await container.remove({ force: true }).catch((removeError: unknown) => {
        if (!isNotFound(removeError)) {
          this.logger.error(
            { err: removeError, containerId: container.id },
            'removing a failed sandbox failed',
          );
        }
      });
      throw new Error(`starting the sandbox failed: ${dockerMessage(error)}`, { cause: error });
    }
  }

  /** Containers (running or not) carrying these labels. */
  async listContainers(labels: Partial<SandboxLabels>): Promise<ListedContainer[]> {
    const containers = await this.docker.listContainers({
      all: true,
      filters: { label: labelFilter(labels) },
    });
    return containers.map((container) => ({
      id: container.Id,
      labels: container.Labels ?? {},
      state: container.State,
    }));
  }

  async listVolumes(labels: Partial<SandboxLabels>): Promise<ListedVolume[]> {
    const { Volumes } = await this.docker.listVolumes({ filters: { label: labelFilter(labels) } });
    return (Volumes ?? []).map((volume) => ({ name: volume.Name, labels: volume.Labels ?? {} }));
  }

  /**
   * Docker silently creates a missing named volume on container create: an environment whose
   * volume is gone must fail here, not run with an empty /code.
   */
  private async requireVolume(name: string): Promise<void> {
    try {
      await this.docker.getVolume(name).inspect();
    } catch (error) {
      if (isNotFound(error)) throw new VolumeNotFoundError(name);
      throw error;
    }
  }

  /** Force-removes a container by id; a missing one is fine. */
  async removeContainer(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true });
      this.logger.debug({ containerId: id }, 'container removed');
    } catch (error) {
      const status = dockerStatus(error);
      if (status !== 404 && status !== 409) throw error;
    }
  }
}

/** The volume vanished between the check and the create: whatever Docker creates is labelled and empty. */
function volumeMount(name: string, target: string, readOnly: boolean, labels: SandboxLabels) {
  return {
    Type: 'volume' as const,
    Source: name,
    Target: target,
    ReadOnly: readOnly,
    VolumeOptions: {
      NoCopy: true,
      Labels: toDockerLabels(labels),
      DriverConfig: { Name: 'local', Options: {} },
    },
  };
}

/**
 * The directory as an uncompressed tar stream with modes kept and owners reset to root.
 * Symlinks are refused: a build context here holds only real files.
 */
function packDirectory(root: string): NodeJS.ReadableStream {
  const archive = pack();
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const stat = await lstat(path);
      const header = {
        name: relative(root, path),
        mode: stat.mode & 0o7777,
        uid: 0,
        gid: 0,
        mtime: stat.mtime,
      };
      if (stat.isDirectory()) {
        archive.entry({ ...header, type: 'directory' });
        await walk(path);
      } else if (stat.isFile()) {
        const content = await readFile(path);
        await new Promise<void>((resolve, reject) => {
          archive.entry({ ...header, type: 'file' }, content, (error) =>
            error ? reject(error) : resolve(),
          );
        });
      } else {
        throw new Error(`build context entry ${path} is not a regular file or directory`);
      }
    }
  };
  void walk(root).then(
    () => archive.finalize(),
    (error: unknown) => archive.destroy(error as Error),
  );
  return archive as unknown as NodeJS.ReadableStream;
}
