import { readdir, readFile, lstat } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import type { Socket } from 'node:net';
import type Docker from 'dockerode';
import { extract, pack } from 'tar-stream';
import type { Logger } from '@assist-tee/logger';
import { dockerMessage, dockerStatus, isNotFound } from './errors.js';
import { forceRemove } from './force-remove.js';
import { type EngineRuntime, runtimeProblems, sandboxProblems } from './verify.js';
import { buildTar, SANDBOX_ID, validateFilePath, type SandboxFile } from './files.js';
import { type ArchiveLimits, repackArchive } from './archive.js';
import {
  LABEL_PREFIX,
  labelFilter,
  MANAGED_LABEL,
  toDockerLabels,
  type SandboxLabels,
} from './labels.js';
import { SandboxHandle, type Sandbox } from './sandbox.js';

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

const RUNTIME_CHECK_MS = 10_000;

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
  /** The environment's volume; a setup sandbox has none (it sends its install out on stdout). */
  volume?: { name: string; target: string; readOnly: boolean };
  limits: SandboxLimits;
  labels: SandboxLabels;
  /** A Docker network to attach to; without one the sandbox has no network at all. */
  network?: string;
  /** /etc/hosts entries, "name:address". */
  hosts?: string[];
  /** Host files mounted read-only (e.g. a CA bundle). */
  files?: { source: string; target: string }[];
  /**
   * A second size-capped tmpfs (a setup's install directory), also the working directory.
   * Its size counts against limits.memoryBytes, as /tmp's does.
   */
  scratch?: { target: string; bytes: number };
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

export interface NetworkOptions {
  name: string;
  /** The host's name for the bridge interface, so firewall rules can name it. */
  bridge: string;
  /** No route out of the host: the network reaches only the host itself. */
  internal: boolean;
}

export interface NetworkInfo {
  name: string;
  bridge: string;
  /** The host's address on the bridge. */
  gateway: string;
  subnet: string;
}

export interface ListedContainer {
  id: string;
  labels: Record<string, string>;
  state: string;
  createdAt: Date;
}

export interface ListedVolume {
  name: string;
  labels: Record<string, string>;
  createdAt: Date;
}

/** The volume a sandbox or a write needs does not exist (e.g. its environment was deleted). */
export class VolumeNotFoundError extends Error {
  override readonly name = 'VolumeNotFoundError';
  constructor(readonly volume: string) {
    super(`volume ${volume} does not exist`);
  }
}

/** The sandbox user: unprivileged, and the same in every runtime image. */
export const SANDBOX_USER = `${SANDBOX_ID}:${SANDBOX_ID}`;

/** /dev/shm is a memory-backed tmpfs in the sandbox; nothing there needs more than this. */
const SHM_BYTES = 1024 * 1024;

/** The only code that talks to the Docker engine: images, volumes and sandbox containers. */
export class SandboxDriver {
  private readonly docker: Docker;
  private readonly logger: Logger;
  private readonly runtime: string;
  private readonly networkRuntime: string;
  private readonly deployment: string | undefined;
  private readonly requireGvisor: boolean;
  private gvisorCheckedAt = 0;

  constructor(options: SandboxDriverOptions) {
    this.requireGvisor = options.requireGvisor ?? false;
    this.deployment = options.deployment;
    this.docker = options.docker;
    this.logger = options.logger;
    this.runtime = options.runtime;
    this.networkRuntime = options.networkRuntime ?? `${options.runtime}-net`;
  }

  /** The labels with this driver's deployment added. */
  private labelled<T extends Partial<SandboxLabels>>(labels: T): T {
    return this.deployment === undefined ? labels : { ...labels, deployment: this.deployment };
  }

  /** Throws if the engine is unreachable. */
  async ping(): Promise<void> {
    await this.docker.ping();
  }

  /** Whether the engine has the configured sandbox runtimes (with and without network). */
  async hasRuntime(): Promise<boolean> {
    const runtimes = await this.engineRuntimes();
    return Object.hasOwn(runtimes, this.runtime) && Object.hasOwn(runtimes, this.networkRuntime);
  }

  /** What keeps the configured runtimes from being gVisor as intended; empty when they are. */
  async runtimeProblems(): Promise<string[]> {
    const runtimes = await this.engineRuntimes();
    return [
      ...runtimeProblems(this.runtime, runtimes[this.runtime], '--network=none'),
      ...runtimeProblems(this.networkRuntime, runtimes[this.networkRuntime], '--network=host'),
    ];
  }

  private async assertGvisor(): Promise<void> {
    if (Date.now() - this.gvisorCheckedAt < RUNTIME_CHECK_MS) return;
    const problems = await this.runtimeProblems();
    if (problems.length > 0) {
      throw new Error(`refusing to run user code outside gVisor: ${problems.join('; ')}`);
    }
    this.gvisorCheckedAt = Date.now();
  }

  private async engineRuntimes(): Promise<Record<string, EngineRuntime>> {
    const info = (await this.docker.info()) as { Runtimes?: Record<string, EngineRuntime> };
    return info.Runtimes ?? {};
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
          // A throw here would be uncaught (a stream listener): a line that is not the
          // engine's JSON (a proxy's error page, a cut connection) fails the build instead.
          let event: { stream?: string; error?: string };
          try {
            event = JSON.parse(line) as typeof event;
          } catch {
            failure ??= `the engine sent a line that is not JSON: ${line.slice(0, 200)}`;
            continue;
          }
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
    await this.docker.createVolume({ Name: name, Labels: toDockerLabels(this.labelled(labels)) });
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
   * Writes files into a volume without a shell: puts an in-memory tar into a never-started
   * container that has the volume at `target`.
   */
  async writeFiles(options: WriteFilesOptions): Promise<void> {
    // Written from the parent, with the target directory in the tar, so its owner is set too.
    const archive = await buildTar(
      options.files,
      options.owner ?? 'root',
      basename(options.target),
    );
    await this.withVolumeContainer(options, async (container) => {
      await container.putArchive(archive, {
        path: dirname(options.target),
        noOverwriteDirNonDir: 'true',
      });
      this.logger.debug(
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
  async writeArchive(
    options: VolumeAccessOptions & ArchiveLimits & { archive: NodeJS.ReadableStream },
  ): Promise<VolumeUsage> {
    return this.withVolumeContainer(options, async (container) => {
      const written = await repackArchive(options.archive, options, (archive, abortSignal) =>
        container.putArchive(archive, {
          path: options.target,
          noOverwriteDirNonDir: 'true',
          abortSignal,
        }),
      );
      this.logger.debug({ volume: options.volume, ...written }, 'archive written');
      return written;
    });
  }

  /**
   * Counts the files and bytes under the volume's root, reading its tar through the engine;
   * stops reading as soon as `stopAbove` is passed (the caller only needs to know that).
   */
  async volumeUsage(
    options: VolumeAccessOptions & { stopAbove: VolumeUsage },
  ): Promise<VolumeUsage> {
    return this.withVolumeContainer(options, async (container) => {
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
  async readVolumeFile(
    options: VolumeAccessOptions & { path: string; maxBytes: number },
  ): Promise<Buffer | undefined> {
    validateFilePath(options.path);
    return this.withVolumeContainer(options, async (container) => {
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
  private async withVolumeContainer<T>(
    options: VolumeAccessOptions,
    use: (container: Docker.Container) => Promise<T>,
  ): Promise<T> {
    await this.requireVolume(options.volume);
    const container = await this.docker.createContainer({
      Image: options.image,
      // Never run; Docker only insists that a container has something to run.
      Entrypoint: ['/never-started'],
      Cmd: [],
      Labels: toDockerLabels(this.labelled(options.labels)),
      NetworkDisabled: true,
      HostConfig: {
        NetworkMode: 'none',
        LogConfig: { Type: 'none', Config: {} },
        Mounts: [volumeMount(options.volume, options.target, false, this.labelled(options.labels))],
      },
    });
    this.logger.debug({ containerId: container.id, volume: options.volume }, 'volume container');
    try {
      return await use(container);
    } finally {
      await this.removeContainer(container.id).catch((error: unknown) => {
        this.logger.error({ err: error, containerId: container.id }, 'removing it failed');
      });
    }
  }

  /**
   * Creates the bridge network unless it exists (several processes may race here) and returns
   * its addresses. Containers on it cannot reach each other (inter-container traffic is off).
   */
  async ensureNetwork(options: NetworkOptions): Promise<NetworkInfo> {
    try {
      await this.docker.createNetwork({
        Name: options.name,
        Driver: 'bridge',
        Internal: options.internal,
        CheckDuplicate: true,
        Labels: { [MANAGED_LABEL]: 'true' },
        Options: {
          'com.docker.network.bridge.name': options.bridge,
          'com.docker.network.bridge.enable_icc': 'false',
        },
      });
      this.logger.info({ network: options.name }, 'network created');
    } catch (error) {
      if (dockerStatus(error) !== 409) throw error;
    }
    const info = (await this.docker.getNetwork(options.name).inspect()) as {
      Internal: boolean;
      Options?: Record<string, string>;
      IPAM?: { Config?: { Gateway?: string; Subnet?: string }[] };
    };
    const config = info.IPAM?.Config?.[0];
    const bridge = info.Options?.['com.docker.network.bridge.name'];
    if (config?.Gateway === undefined || config.Subnet === undefined) {
      throw new Error(`network ${options.name} has no IPv4 gateway`);
    }
    if (info.Internal !== options.internal || bridge !== options.bridge) {
      throw new Error(
        `network ${options.name} exists with other settings (internal ${info.Internal}, bridge ${bridge}); remove it`,
      );
    }
    return { name: options.name, bridge, gateway: config.Gateway, subnet: config.Subnet };
  }

  /**
   * Creates a sandbox container (runtime, no network, read-only root, capped /tmp, no
   * capabilities, limits), attaches stdin/stdout/stderr before starting it, and starts it.
   * A container that fails to attach or start is removed before the error is rethrown.
   */
  async start(spec: SandboxSpec): Promise<Sandbox> {
    if (this.requireGvisor) await this.assertGvisor();
    const { limits, volume } = spec;
    // No volume check before the create: the one after it (a volume Docker made in place of a
    // missing one is marked) covers a volume missing all along too, one engine call fewer.
    const network = spec.network;
    const runtime = network === undefined ? this.runtime : this.networkRuntime;
    const networkMode = network ?? 'none';
    const container = await this.docker.createContainer({
      Image: spec.image,
      Cmd: spec.cmd,
      Env: spec.env,
      User: SANDBOX_USER,
      WorkingDir: spec.scratch?.target ?? volume?.target,
      // Not the container id: user code learns nothing about the host from it.
      Hostname: 'sandbox',
      Labels: toDockerLabels(this.labelled(spec.labels)),
      Tty: false,
      OpenStdin: true,
      StdinOnce: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      NetworkDisabled: network === undefined,
      HostConfig: {
        Runtime: runtime,
        NetworkMode: networkMode,
        ExtraHosts: spec.hosts ?? [],
        ReadonlyRootfs: true,
        Tmpfs: {
          '/tmp': tmpfsOptions(limits.tmpfsBytes),
          ...(spec.scratch && { [spec.scratch.target]: tmpfsOptions(spec.scratch.bytes) }),
        },
        ShmSize: SHM_BYTES,
        Mounts: [
          ...(volume === undefined
            ? []
            : [
                volumeMount(
                  volume.name,
                  volume.target,
                  volume.readOnly,
                  this.labelled(spec.labels),
                ),
              ]),
          ...(spec.files ?? []).map((file) => ({
            Type: 'bind' as const,
            Source: file.source,
            Target: file.target,
            ReadOnly: true,
          })),
        ],
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
    // Both checks at once; the container is only started once both passed.
    const [recreated, inspected] = await Promise.allSettled([
      volume === undefined ? false : this.isRecreatedVolume(volume.name),
      container.inspect(),
    ]);
    // The environment's volume was missing (deleted before or while this container was
    // created): the empty volume Docker made in its place goes with the container, and the
    // start fails as for a missing volume.
    if (volume !== undefined && (recreated.status === 'rejected' || recreated.value)) {
      await this.removeContainer(container.id);
      if (recreated.status === 'rejected') throw recreated.reason;
      await this.removeVolume(volume.name).catch(() => undefined);
      throw new VolumeNotFoundError(volume.name);
    }
    let socket: Socket | undefined;
    try {
      if (inspected.status === 'rejected') throw inspected.reason;
      // No user code runs in a container that is not what was asked for.
      const problems = sandboxProblems(inspected.value, {
        runtime,
        networkMode,
        user: SANDBOX_USER,
        env: spec.env,
      });
      if (problems.length > 0) {
        throw new Error(`the engine made a sandbox that ${problems.join('; ')}`);
      }
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
      // Gone or already being removed (its environment was deleted meanwhile) is fine.
      await this.removeContainer(container.id).catch((removeError: unknown) => {
        this.logger.error(
          { err: removeError, containerId: container.id },
          'removing a failed sandbox failed',
        );
      });
      throw new Error(`starting the sandbox failed: ${dockerMessage(error)}`, { cause: error });
    }
  }

  /** Containers (running or not) carrying these labels. */
  async listContainers(labels: Partial<SandboxLabels>): Promise<ListedContainer[]> {
    const containers = await this.docker.listContainers({
      all: true,
      filters: { label: labelFilter(this.labelled(labels)) },
    });
    return containers.map((container) => ({
      id: container.Id,
      labels: container.Labels ?? {},
      state: container.State,
      createdAt: new Date(container.Created * 1000),
    }));
  }

  /** The ids of every container the engine lists, whoever made it. */
  async engineContainerIds(): Promise<Set<string>> {
    const containers = await this.docker.listContainers({ all: true });
    return new Set(containers.map((container) => container.Id));
  }

  async listVolumes(labels: Partial<SandboxLabels>): Promise<ListedVolume[]> {
    const { Volumes } = await this.docker.listVolumes({
      filters: { label: labelFilter(this.labelled(labels)) },
    });
    return (Volumes ?? []).map((volume) => ({
      name: volume.Name,
      labels: volume.Labels ?? {},
      createdAt: new Date((volume as { CreatedAt?: string }).CreatedAt ?? 0),
    }));
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

  /** Whether the volume is one Docker made in place of a missing one (see volumeMount). */
  private async isRecreatedVolume(name: string): Promise<boolean> {
    const { Labels } = await this.docker.getVolume(name).inspect();
    return Labels?.[RECREATED_LABEL] === 'true';
  }

  /** Force-removes a container by id; a missing one, or one already being removed, is fine. */
  async removeContainer(id: string): Promise<void> {
    if ((await forceRemove(this.docker.getContainer(id))) === 'removed') {
      this.logger.debug({ containerId: id }, 'container removed');
    }
  }
}

function tmpfsOptions(bytes: number): string {
  return `rw,nosuid,nodev,noexec,size=${bytes}`;
}

/**
 * Should the volume vanish between the check and the create, Docker creates an empty one: it is
 * labelled, and marked so that start() can tell it from the real one.
 */
const RECREATED_LABEL = `${LABEL_PREFIX}.recreated`;

function volumeMount(name: string, target: string, readOnly: boolean, labels: SandboxLabels) {
  return {
    Type: 'volume' as const,
    Source: name,
    Target: target,
    ReadOnly: readOnly,
    VolumeOptions: {
      NoCopy: true,
      Labels: { ...toDockerLabels(labels), [RECREATED_LABEL]: 'true' },
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
