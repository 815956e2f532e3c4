import { lookup } from 'node:dns/promises';
import type { Config } from '@assist-tee/config';
import { closeBridgeToHost, closeBridgeToPrivateNetworks } from '@assist-tee/egress';
import type { SandboxDriver } from '@assist-tee/sandbox';

/** The network setup sandboxes download dependencies through: a route out, nothing else. */
export const SETUP_NETWORK = { name: 'assist-tee-setup', bridge: 'tee-setup0', internal: false };

/**
 * Creates the setup network unless it exists and closes it, in the host firewall, to the host
 * itself and to private networks (a configured HTTP proxy stays reachable).
 */
export async function prepareSetupNetwork(
  driver: SandboxDriver,
  setup: Config['setup'],
): Promise<void> {
  await driver.ensureNetwork(SETUP_NETWORK);
  await closeBridgeToHost(SETUP_NETWORK.bridge);
  const proxies = [setup.httpProxy, setup.httpsProxy].filter((proxy) => proxy !== '');
  const proxyAddresses = await Promise.all(
    proxies.map(async (proxy) => {
      const { hostname } = new URL(proxy);
      const addresses = await lookup(hostname.replace(/^\[|\]$/g, ''), { all: true, family: 4 });
      return addresses.map((address) => address.address);
    }),
  );
  await closeBridgeToPrivateNetworks(SETUP_NETWORK.bridge, [...new Set(proxyAddresses.flat())]);
}
