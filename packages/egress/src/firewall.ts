import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/**
 * Host firewall rules for the sandbox bridges. A runsc sandbox on a Docker bridge reaches every
 * address of the host itself, whatever the network's "internal" flag says (DESIGN §4), and
 * Docker's DOCKER-USER chain only sees forwarded traffic. So the INPUT chain jumps to our own
 * chain, which rejects everything that arrives from a sandbox bridge except the ports opened
 * for the egress proxy. Rejecting (not dropping) makes a refused connection fail at once.
 */
export const FIREWALL_CHAIN = 'ASSIST-TEE-INPUT';

export interface OpenPort {
  bridge: string;
  address: string;
  port: number;
  /** The process that opened it, in the rule's comment: a restart closes what it left open. */
  owner: string;
}

type Run = (args: string[]) => Promise<void>;

function commands(binary: string): Run {
  // -w waits for the xtables lock: several services set rules at the same time.
  return async (args) => {
    await execFileAsync(binary, ['-w', ...args]);
  };
}

async function exists(run: Run, args: string[]): Promise<boolean> {
  try {
    await run(args);
    return true;
  } catch {
    return false;
  }
}

/** Appends the rule unless an identical one exists. */
async function ensureRule(run: Run, rule: string[], position: 'append' | 'first'): Promise<void> {
  if (await exists(run, ['-C', ...rule])) return;
  const [chain, ...spec] = rule;
  await run(position === 'first' ? ['-I', chain!, '1', ...spec] : ['-A', chain!, ...spec]);
}

async function ensureChain(run: Run): Promise<void> {
  if (!(await exists(run, ['-n', '-L', FIREWALL_CHAIN]))) {
    await run(['-N', FIREWALL_CHAIN]).catch(async (error: unknown) => {
      // Another process created it in between.
      if (!(await exists(run, ['-n', '-L', FIREWALL_CHAIN]))) throw error;
    });
  }
  await ensureRule(run, ['INPUT', '-j', FIREWALL_CHAIN], 'first');
}

function failure(what: string, error: unknown): Error {
  return new Error(
    `${what} failed: the services need root (or CAP_NET_ADMIN) and iptables to keep sandboxes away from the host's ports`,
    { cause: error },
  );
}

/** Rejects every packet a sandbox on `bridge` sends to the host (IPv4 and, when present, IPv6). */
export async function closeBridgeToHost(bridge: string): Promise<void> {
  try {
    for (const binary of ['iptables', 'ip6tables']) {
      const run = commands(binary);
      if (binary === 'ip6tables' && !(await exists(run, ['-n', '-L', 'INPUT']))) continue;
      await ensureChain(run);
      await ensureRule(
        run,
        [FIREWALL_CHAIN, '-i', bridge, '-p', 'tcp', '-j', 'REJECT', '--reject-with', 'tcp-reset'],
        'append',
      );
      await ensureRule(run, [FIREWALL_CHAIN, '-i', bridge, '-j', 'REJECT'], 'append');
    }
  } catch (error) {
    throw failure(`closing bridge ${bridge} to the host`, error);
  }
}

const ownerComment = (owner: string) => `assist-tee:${owner}`;

function openRule({ bridge, address, port, owner }: OpenPort): string[] {
  return [
    FIREWALL_CHAIN,
    '-i',
    bridge,
    '-d',
    address,
    '-p',
    'tcp',
    '--dport',
    String(port),
    '-m',
    'comment',
    '--comment',
    ownerComment(owner),
    '-j',
    'ACCEPT',
  ];
}

/** Lets sandboxes on the bridge reach one TCP port of the host (ahead of the rejects). */
export async function openHostPort(open: OpenPort): Promise<void> {
  try {
    const run = commands('iptables');
    await ensureChain(run);
    await ensureRule(run, openRule(open), 'first');
  } catch (error) {
    throw failure(`opening ${open.address}:${open.port} on ${open.bridge}`, error);
  }
}

/**
 * Removes the ports an earlier run of `owner` opened and never closed (it was killed): its
 * proxy is gone, and a later process could listen there.
 */
export async function closeHostPortsOf(owner: string): Promise<void> {
  const run = commands('iptables');
  if (!(await exists(run, ['-n', '-L', FIREWALL_CHAIN]))) return;
  const { stdout } = await execFileAsync('iptables', ['-w', '-S', FIREWALL_CHAIN]);
  for (const line of stdout.split('\n')) {
    if (!line.startsWith(`-A ${FIREWALL_CHAIN} `)) continue;
    // The listing quotes comments; "-A CHAIN spec..." deletes as "-D CHAIN spec...".
    const spec = line
      .slice(3)
      .split(' ')
      .map((word) => word.replace(/^"(.*)"$/, '$1'));
    if (spec[spec.indexOf('--comment') + 1] !== ownerComment(owner)) continue;
    await run(['-D', ...spec]).catch(() => undefined);
  }
}

/** Removes what openHostPort added; a missing rule is fine. */
export async function closeHostPort(open: OpenPort): Promise<void> {
  const run = commands('iptables');
  while (await exists(run, ['-D', ...openRule(open)])) {
    // Deleted one copy; repeat in case the rule was added twice.
  }
}

/** Addresses a setup sandbox may not reach through the host's routing (NAT). */
const PRIVATE_RANGES = [
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '100.64.0.0/10',
  '169.254.0.0/16',
  '127.0.0.0/8',
];
export const FORWARD_CHAIN = 'ASSIST-TEE-FORWARD';

/**
 * Setup sandboxes have a route out (they download dependencies), but must not reach private
 * networks or the cloud metadata address through it. DNS (port 53) stays open, because the
 * engine's resolver forwards queries from the sandbox's own namespace, and so do `allowed`
 * addresses (a configured HTTP proxy on a private network).
 */
export async function closeBridgeToPrivateNetworks(
  bridge: string,
  allowed: string[] = [],
): Promise<void> {
  try {
    const run = commands('iptables');
    if (!(await exists(run, ['-n', '-L', FORWARD_CHAIN]))) {
      await run(['-N', FORWARD_CHAIN]).catch(async (error: unknown) => {
        if (!(await exists(run, ['-n', '-L', FORWARD_CHAIN]))) throw error;
      });
    }
    await ensureRule(run, ['DOCKER-USER', '-j', FORWARD_CHAIN], 'first');
    for (const protocol of ['udp', 'tcp']) {
      await ensureRule(
        run,
        [FORWARD_CHAIN, '-i', bridge, '-p', protocol, '--dport', '53', '-j', 'RETURN'],
        'first',
      );
    }
    for (const address of allowed) {
      await ensureRule(run, [FORWARD_CHAIN, '-i', bridge, '-d', address, '-j', 'RETURN'], 'first');
    }
    for (const range of PRIVATE_RANGES) {
      await ensureRule(run, [FORWARD_CHAIN, '-i', bridge, '-d', range, '-j', 'REJECT'], 'append');
    }
  } catch (error) {
    throw failure(`closing bridge ${bridge} to private networks`, error);
  }
}
