import type Docker from 'dockerode';
import type { Logger } from '@assist-tee/logger';
import type { ArchiveLimits } from './archive.js';
import type { SandboxLabels } from './labels.js';
import type { Sandbox } from './sandbox.js';
import { driverContext, type DriverContext } from './context.js';
import { Runtimes } from './runtimes.js';
import { buildImage, imageExists, type BuildImageOptions } from './images.js';
import { createVolume, removeVolume } from './volumes.js';
import {
  readVolumeFile,
  volumeUsage,
  writeArchive,
  writeFiles,
  type VolumeAccessOptions,
  type VolumeUsage,
  type WriteFilesOptions,
} from './volume-files.js';
import { ensureNetwork, type NetworkInfo, type NetworkOptions } from './networks.js';
import { startSandbox, type SandboxSpec } from './sandboxes.js';
import {
  engineContainerIds,
  listContainers,
  listVolumes,
  type ListedContainer,
  type ListedVolume,
} from './listing.js';
import { removeContainer } from './remove-container.js';

export type { BuildImageOptions } from './images.js';
export { VolumeNotFoundError } from './volumes.js';
export type { VolumeAccessOptions, VolumeUsage, WriteFilesOptions } from './volume-files.js';
export type { NetworkInfo, NetworkOptions } from './networks.js';
export { SANDBOX_USER, type SandboxLimits, type SandboxSpec } from './sandboxes.js';
export type { ListedContainer, ListedVolume } from './listing.js';

export interface SandboxDriverOptions {
  docker: Docker;
  logger: Logger;
  /** The engine's runtime for sandboxes, e.g. 'runsc'. */
  runtime: string;
  /**
   * Labels everything this driver creates and narrows everything it lists: several systems
   * (or test stacks) can share one engine without seeing each other's containers.
   */
  deployment?: string;
  /**
   * The runtime for sandboxes attached to a network, e.g. 'runsc-net' (runsc with
   * --network=host, which gives the sandbox its container's network namespace; see
   * docs/host-facts.md).
   */
  networkRuntime?: string;
  /**
   * Refuse to start a sandbox unless both runtimes are gVisor as intended (runtimeProblems),
   * checked again every RUNTIME_CHECK_MS: the engine's runtimes can be changed under a running
   * service (daemon.json and a reload).
   */
  requireGvisor?: boolean;
}

/**
 * The only code that talks to the Docker engine: images, volumes and sandbox containers. The
 * one object callers hold; each job is done by its own module.
 */
export class SandboxDriver {
  private readonly context: DriverContext;
  private readonly runtimes: Runtimes;
  private readonly requireGvisor: boolean;

  constructor(options: SandboxDriverOptions) {
    this.requireGvisor = options.requireGvisor ?? false;
    this.context = driverContext(options);
    this.runtimes = new Runtimes(
      options.docker,
      options.runtime,
      options.networkRuntime ?? `${options.runtime}-net`,
    );
  }

  /** Throws if the engine is unreachable. */
  async ping(): Promise<void> {
    await this.context.docker.ping();
  }

  /** Whether the engine has the configured sandbox runtimes (with and without network). */
  async hasRuntime(): Promise<boolean> {
    return this.runtimes.hasRuntime();
  }

  /** What keeps the configured runtimes from being gVisor as intended; empty when they are. */
  async runtimeProblems(): Promise<string[]> {
    return this.runtimes.runtimeProblems();
  }

  async imageExists(tag: string): Promise<boolean> {
    return imageExists(this.context.docker, tag);
  }

  /** Builds an image from a local context; no registry is involved. Rejects with the build's error text. */
  async buildImage(options: BuildImageOptions): Promise<void> {
    return buildImage(this.context.docker, this.context.logger, options);
  }

  async createVolume(name: string, labels: SandboxLabels): Promise<void> {
    return createVolume(this.context, name, labels);
  }

  /** Removes a volume; a missing one is fine. */
  async removeVolume(name: string): Promise<void> {
    return removeVolume(this.context, name);
  }

  /**
   * Writes files into a volume without a shell: puts an in-memory tar into a never-started
   * container that has the volume at `target`.
   */
  async writeFiles(options: WriteFilesOptions): Promise<void> {
    return writeFiles(this.context, options);
  }

  /**
   * Streams an untrusted tar into the volume under `target` (e.g. what a setup sandbox
   * installed), as repackArchive rewrites it: only directories and regular files, modes and
   * owner set here, never more than the limits (ArchiveOverCapError; the upload is aborted and
   * what it wrote stays: the caller removes the volume). Returns what was written.
   */
  async writeArchive(
    options: VolumeAccessOptions & ArchiveLimits & { archive: NodeJS.ReadableStream },
  ): Promise<VolumeUsage> {
    return writeArchive(this.context, options);
  }

  /**
   * Counts the files and bytes under the volume's root, reading its tar through the engine;
   * stops reading as soon as `stopAbove` is passed (the caller only needs to know that).
   */
  async volumeUsage(
    options: VolumeAccessOptions & { stopAbove: VolumeUsage },
  ): Promise<VolumeUsage> {
    return volumeUsage(this.context, options);
  }

  /** A file of the volume (path relative to its root), or undefined when there is none. */
  async readVolumeFile(
    options: VolumeAccessOptions & { path: string; maxBytes: number },
  ): Promise<Buffer | undefined> {
    return readVolumeFile(this.context, options);
  }

  /**
   * Creates the bridge network unless it exists (several processes may race here) and returns
   * its addresses. Containers on it cannot reach each other (inter-container traffic is off).
   */
  async ensureNetwork(options: NetworkOptions): Promise<NetworkInfo> {
    return ensureNetwork(this.context.docker, this.context.logger, options);
  }

  /**
   * Creates a sandbox container (runtime, no network, read-only root, capped /tmp, no
   * capabilities, limits), attaches stdin/stdout/stderr before starting it, and starts it.
   * A container that fails to attach or start is removed before the error is rethrown.
   */
  async start(spec: SandboxSpec): Promise<Sandbox> {
    if (this.requireGvisor) await this.runtimes.assertGvisor();
    return startSandbox(this.context, this.runtimes, spec);
  }

  /** Containers (running or not) carrying these labels. */
  async listContainers(labels: Partial<SandboxLabels>): Promise<ListedContainer[]> {
    return listContainers(this.context, labels);
  }

  /** The ids of every container the engine lists, whoever made it. */
  async engineContainerIds(): Promise<Set<string>> {
    return engineContainerIds(this.context.docker);
  }

  async listVolumes(labels: Partial<SandboxLabels>): Promise<ListedVolume[]> {
    return listVolumes(this.context, labels);
  }

  /** Force-removes a container by id; a missing one, or one already being removed, is fine. */
  async removeContainer(id: string): Promise<void> {
    return removeContainer(this.context, id);
  }
}
