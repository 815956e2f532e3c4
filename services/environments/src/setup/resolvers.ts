import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';

const HOST_RESOLV_CONF = '/etc/resolv.conf';
/** systemd-resolved's list of upstream servers, behind its 127.0.0.53 stub. */
const SYSTEMD_RESOLV_CONF = '/run/systemd/resolve/resolv.conf';
const SYSTEMD_STUB = '127.0.0.53';

/**
 * The nameservers a setup sandbox's DNS queries reach. The engine's embedded DNS (127.0.0.11
 * in the sandbox) forwards them from the sandbox's own network namespace, so they leave
 * through the setup bridge, to the servers of the host's resolv.conf, or of systemd-resolved's
 * upstream list when the host points only at its local stub (as Docker reads them). Loopback
 * servers are left out: the engine never forwards to them.
 */
export async function engineResolvers(
  read: (path: string) => Promise<string> = (path) => readFile(path, 'utf8'),
): Promise<string[]> {
  const host = nameservers(await read(HOST_RESOLV_CONF).catch(() => ''));
  const servers =
    host.length === 1 && host[0] === SYSTEMD_STUB
      ? nameservers(await read(SYSTEMD_RESOLV_CONF).catch(() => ''))
      : host;
  return servers.filter((server) => !server.startsWith('127.') && server !== '::1');
}

function nameservers(resolvConf: string): string[] {
  return resolvConf
    .split('\n')
    .map((line) => /^\s*nameserver\s+(\S+)/.exec(line)?.[1])
    .filter((server): server is string => server !== undefined && isIP(server) !== 0);
}
