import { isIP } from 'node:net';
import type { Config } from '@assist-tee/config';
import { closeBridge, parseAllowNet, setOpenings, startEgressProxy } from '@assist-tee/egress';
import type { Logger } from '@assist-tee/logger';
import type { SandboxDriver } from '@assist-tee/sandbox';

/**
 * The network of sandboxes with `allow_net`: internal (no route out), inter-container traffic
 * off, and closed by the firewall to the host, except for the egress proxy's port, and to
 * everything it could route to.
 */
export const EGRESS_NETWORK = { name: 'assist-tee-egress', bridge: 'tee-egress0', internal: true };

export interface EgressAccess {
  network: string;
  /** Proxy settings for the sandbox's environment; they carry the grant's token. */
  env: string[];
  /**
   * /etc/hosts entries pointing the allowed names at the proxy. The sandbox has no DNS, and
   * Deno resolves a name before it asks the proxy (waiting out a DNS timeout otherwise); the
   * proxy does the real resolution.
   */
  hosts: string[];
  /** Ends the grant and any connection still open under it. */
  revoke(): void;
}

export interface Egress {
  /** Access for one sandbox to exactly the hosts in `allowNet`, through the proxy. */
  grant(allowNet: readonly string[]): EgressAccess;
  close(): Promise<void>;
}

/** Prepares the egress network and its firewall rules, and starts the proxy on its gateway. */
export async function startEgress(
  driver: SandboxDriver,
  config: Config['egress'],
  logger: Logger,
  /**
   * This process's instance id: it owns the firewall opening for its proxy port, and replaces
   * the one a killed process of the same instance left.
   */
  instanceId: string,
): Promise<Egress> {
  const network = await driver.ensureNetwork(EGRESS_NETWORK);
  await closeBridge({ bridge: network.bridge, outbound: 'nowhere' });
  const proxy = await startEgressProxy({ host: network.gateway, port: config.proxyPort, logger });
  const opening = { bridge: network.bridge, address: network.gateway, port: proxy.port };
  try {
    await setOpenings(instanceId, [opening]);
  } catch (error) {
    await proxy.close();
    throw error;
  }
  logger.info({ proxy: `${network.gateway}:${proxy.port}` }, 'egress proxy listening');
  return {
    grant(allowNet) {
      const grant = proxy.grant(allowNet);
      const url = grant.proxyUrl(network.gateway);
      return {
        network: network.name,
        // Both spellings: runtimes and libraries differ in which one they read.
        env: [`HTTP_PROXY=${url}`, `HTTPS_PROXY=${url}`, `http_proxy=${url}`, `https_proxy=${url}`],
        hosts: parseAllowNet(allowNet)
          .filter((entry) => isIP(entry.host) === 0)
          .map((entry) => `${entry.host}:${network.gateway}`),
        revoke: () => grant.revoke(),
      };
    },
    async close() {
      await setOpenings(instanceId, []).catch((error: unknown) => {
        logger.warn({ err: error }, 'removing the egress firewall opening failed');
      });
      await proxy.close();
    },
  };
}
