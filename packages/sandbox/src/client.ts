import Docker from 'dockerode';

export interface DockerClientOptions {
  /** The engine's Unix socket, e.g. /var/run/docker.sock. */
  socketPath: string;
}

export function createDockerClient(options: DockerClientOptions): Docker {
  return new Docker({ socketPath: options.socketPath });
}
