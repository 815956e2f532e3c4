import { lookup } from 'node:dns/promises';
import type { Config } from '@assist-tee/config';
import { closeBridge, type Endpoint } from '@assist-tee/egress';
import type { SandboxDriver } from '@assist-tee/sandbox';
import { engineResolvers } from './resolvers.js';

/** The network setup sandboxes download dependencies through: a route out, nothing else. */
export const SETUP_NETWORK = { name: 'assist-tee-setup', bridge: 'tee-setup0', internal: false };

/**
 * Creates the setup network unless it exists and closes it, in the host firewall, to the host
 * itself and to private networks, except DNS to the engine's resolvers and a configured HTTP
 * proxy.
 */
export async function prepareSetupNetwork(
  driver: SandboxDriver,
  setup: Config['setup'],
): Promise<void> {
  const network = await driver.ensureNetwork(SETUP_NETWORK);
  const [resolvers, proxies] = await Promise.all([engineResolvers(), proxyEndpoints(setup)]);
  await closeBridge({ bridge: network.bridge, outbound: { resolvers, allowed: proxies } });
}

/** Where the configured HTTP(S) proxies listen, every address their names resolve to. */
async function proxyEndpoints(setup: Config['setup']): Promise<Endpoint[]> {
  const proxies = [setup.httpProxy, setup.httpsProxy].filter((proxy) => proxy !== '');
  const endpoints = await Promise.all(
    proxies.map(async (proxy) => {
      const url = new URL(proxy);
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
      const addresses = await lookup(url.hostname.replace(/^\[|\]$/g, ''), { all: true });
      return addresses.map(({ address }) => ({ address, port }));
    }),
  );
  return endpoints.flat();
}
