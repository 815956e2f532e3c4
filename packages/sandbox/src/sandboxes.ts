import type { Socket } from 'node:net';
import { dockerMessage } from './errors.js';
import { sandboxProblems } from './verify.js';
import { SANDBOX_ID } from './files.js';
import { toDockerLabels, type SandboxLabels } from './labels.js';
import { SandboxHandle, type Sandbox } from './sandbox.js';
import type { DriverContext } from './context.js';
import { removeContainer } from './remove-container.js';
import { isRecreatedVolume, removeVolume, VolumeNotFoundError, volumeMount } from './volumes.js';

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

/** The sandbox user: unprivileged, and the same in every runtime image. */
export const SANDBOX_USER = `${SANDBOX_ID}:${SANDBOX_ID}`;

/** /dev/shm is a memory-backed tmpfs in the sandbox; nothing there needs more than this. */
const SHM_BYTES = 1024 * 1024;

/**
 * Creates a sandbox container (runtime, no network, read-only root, capped /tmp, no
 * capabilities, limits), attaches stdin/stdout/stderr before starting it, and starts it.
 * A container that fails to attach or start is removed before the error is rethrown.
 */
export async function startSandbox(
  ctx: DriverContext,
  runtimes: { runtime: string; networkRuntime: string },
  spec: SandboxSpec,
): Promise<Sandbox> {
  const { docker, logger, labelled } = ctx;
  const { limits, volume } = spec;
  // No volume check before the create: the one after it (a volume Docker made in place of a
  // missing one is marked) covers a volume missing all along too, one engine call fewer.
  const network = spec.network;
  const runtime = network === undefined ? runtimes.runtime : runtimes.networkRuntime;
  const networkMode = network ?? 'none';
  const container = await docker.createContainer({
    Image: spec.image,
    Cmd: spec.cmd,
    Env: spec.env,
    User: SANDBOX_USER,
    WorkingDir: spec.scratch?.target ?? volume?.target,
    // Not the container id: user code learns nothing about the host from it.
    Hostname: 'sandbox',
    Labels: toDockerLabels(labelled(spec.labels)),
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
          : [volumeMount(volume.name, volume.target, volume.readOnly, labelled(spec.labels))]),
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
  logger.debug({ containerId: container.id, image: spec.image }, 'sandbox container created');
  // Both checks at once; the container is only started once both passed.
  const [recreated, inspected] = await Promise.allSettled([
    volume === undefined ? false : isRecreatedVolume(docker, volume.name),
    container.inspect(),
  ]);
  // The environment's volume was missing (deleted before or while this container was
  // created): the empty volume Docker made in its place goes with the container, and the
  // start fails as for a missing volume.
  if (volume !== undefined && (recreated.status === 'rejected' || recreated.value)) {
    await removeContainer(ctx, container.id);
    if (recreated.status === 'rejected') throw recreated.reason;
    await removeVolume(ctx, volume.name).catch(() => undefined);
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
      docker: docker,
      logger: logger,
    });
    await container.start();
    sandbox.watchExit();
    logger.debug({ containerId: container.id }, 'sandbox container started');
    return sandbox;
  } catch (error) {
    socket?.destroy();
    // Gone or already being removed (its environment was deleted meanwhile) is fine.
    await removeContainer(ctx, container.id).catch((removeError: unknown) => {
      logger.error(
        { err: removeError, containerId: container.id },
        'removing a failed sandbox failed',
      );
    });
    throw new Error(`starting the sandbox failed: ${dockerMessage(error)}`, { cause: error });
  }
}

function tmpfsOptions(bytes: number): string {
  return `rw,nosuid,nodev,noexec,size=${bytes}`;
}
