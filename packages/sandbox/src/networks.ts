import type Docker from 'dockerode';
import type { Logger } from '@assist-tee/logger';
import { dockerStatus } from './errors.js';
import { MANAGED_LABEL } from './labels.js';

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

/**
 * Creates the bridge network unless it exists (several processes may race here) and returns
 * its addresses. Containers on it cannot reach each other (inter-container traffic is off).
 */
export async function ensureNetwork(
  docker: Docker,
  logger: Logger,
  options: NetworkOptions,
): Promise<NetworkInfo> {
  try {
    await docker.createNetwork({
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
    logger.info({ network: options.name }, 'network created');
  } catch (error) {
    if (dockerStatus(error) !== 409) throw error;
  }
  const info = (await docker.getNetwork(options.name).inspect()) as {
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
