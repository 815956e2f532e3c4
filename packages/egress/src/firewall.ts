import { isIP } from 'node:net';
import { removeLegacyChains } from './legacy.js';
import { applyScript, listJson } from './nft.js';
import { BLOCKED_RANGES } from './policy.js';

/*
 * The host firewall for the sandbox bridges, in an nftables table of its own. A runsc sandbox
 * on a Docker bridge reaches every address of the host itself, whatever the network's
 * "internal" flag says, so each closed bridge's traffic to the host is rejected (input hook)
 * except the openings; its routed traffic (forward hook) goes through the bridge's own chain.
 * The hooks run before Docker's rules (priority filter - 10); a reject in any base chain is
 * final, and Docker's drops still apply to what ours accept. Rejecting (not dropping) makes a
 * refused connection fail at once.
 *
 * Several processes share the table, so each writes only its part, each time whole and in one
 * transaction: a bridge's closure (its chain and map entries), or an owner's openings (set
 * elements carrying the owner in their comment, so a successor replaces what a killed
 * predecessor left). The table's skeleton is restated, identical, in every transaction.
 */

/** The nftables table (family inet: IPv4 and IPv6 alike) that holds every rule of ours. */
export const FIREWALL_TABLE = 'assist_tee';

export interface Endpoint {
  address: string;
  port: number;
}

/** One TCP port of the host that sandboxes on `bridge` may reach (the egress proxy's). */
export interface HostOpening extends Endpoint {
  bridge: string;
}

export interface BridgeClosure {
  bridge: string;
  /**
   * Where sandboxes on the bridge may go through the host's routing: nowhere (the egress
   * network, whose only way out is the proxy on the host), or anywhere outside BLOCKED_RANGES
   * plus DNS to `resolvers` and TCP to the `allowed` endpoints (a configured HTTP proxy), even
   * when those are private.
   */
  outbound: 'nowhere' | { resolvers: readonly string[]; allowed: readonly Endpoint[] };
}

export interface OwnedOpening extends HostOpening {
  owner: string;
}

// Linux interface names: at most 15 bytes; these characters are safe in nft names.
const BRIDGE = /^[A-Za-z0-9_.-]{1,15}$/;
const OWNER = /^[A-Za-z0-9_.:-]{1,100}$/;

/** Closes `bridge` to the host and limits where it routes, replacing its earlier rules. */
export async function closeBridge(closure: BridgeClosure): Promise<void> {
  const commands = bridgeCommands(closure);
  await explained(`closing bridge ${closure.bridge}`, async () => {
    await removeLegacyChains();
    await applyScript([...skeletonCommands(), ...commands]);
  });
}

/** Removes a bridge's closure (its network is gone); nothing to remove is fine. */
export async function removeBridge(bridge: string): Promise<void> {
  checkBridge(bridge);
  const chain = outboundChain(bridge);
  await explained(`removing bridge ${bridge}`, () =>
    applyScript([
      ...skeletonCommands(),
      `add chain inet ${FIREWALL_TABLE} ${chain}`,
      ...idempotentDelete('closed_bridges', quote(bridge)),
      ...idempotentDelete('outbound', `${quote(bridge)} : jump ${chain}`, quote(bridge)),
      `flush chain inet ${FIREWALL_TABLE} ${chain}`,
      `delete chain inet ${FIREWALL_TABLE} ${chain}`,
    ]),
  );
}

/**
 * Makes `openings` the whole set of `owner`'s openings: whatever it had before (a killed
 * process of the same instance included) goes, in the same transaction as the new ones come.
 */
export async function setOpenings(owner: string, openings: readonly HostOpening[]): Promise<void> {
  if (!OWNER.test(owner)) {
    throw new Error(
      `firewall owner ${JSON.stringify(owner)}: expected 1-100 letters, digits, '.', '_', ':' or '-'`,
    );
  }
  openings.forEach(checkOpening);
  const wanted = new Set(openings.map(openingKey));
  await explained(`setting the openings of ${owner}`, async () => {
    await applyScript(skeletonCommands());
    // Also an element of another owner with a key now ours: that process is gone.
    const stale = (await listOpenings()).filter(
      (opening) => opening.owner === owner || wanted.has(openingKey(opening)),
    );
    await applyScript([
      ...skeletonCommands(),
      ...stale.flatMap((opening) => idempotentDelete('openings', openingKey(opening))),
      ...openings.map(
        (opening) =>
          `add element inet ${FIREWALL_TABLE} openings { ${openingKey(opening)} comment ${quote(owner)} }`,
      ),
    ]);
  });
}

/** Every opening in the table, with its owner. */
export async function listOpenings(): Promise<OwnedOpening[]> {
  const listed = await listJson(['set', 'inet', FIREWALL_TABLE, 'openings']);
  const set = listed.find((object) => 'set' in object)?.set as { elem?: unknown[] } | undefined;
  return (set?.elem ?? []).map((element) => {
    // An element with a comment comes wrapped: { elem: { val, comment } }.
    const inner = (element as { elem?: { val: unknown; comment?: string } }).elem;
    const value = (inner?.val ?? element) as { concat: [string, string, number] };
    const [bridge, address, port] = value.concat;
    return { bridge, address, port, owner: inner?.comment ?? '' };
  });
}

async function explained(what: string, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (error) {
    throw new Error(
      `${what} failed: the services need nft (the nftables package) and root or CAP_NET_ADMIN to keep sandboxes away from the host and private networks`,
      { cause: error },
    );
  }
}

/** The table, its sets, maps and base chains; stating them again changes nothing. */
function skeletonCommands(): string[] {
  const table = `inet ${FIREWALL_TABLE}`;
  return [
    `add table ${table}`,
    `add set ${table} closed_bridges { type ifname; }`,
    `add set ${table} openings { type ifname . ipv4_addr . inet_service; }`,
    `add map ${table} outbound { type ifname : verdict; }`,
    `add chain ${table} refuse`,
    `flush chain ${table} refuse`,
    `add rule ${table} refuse meta l4proto tcp reject with tcp reset`,
    `add rule ${table} refuse reject`,
    `add chain ${table} input { type filter hook input priority filter - 10; policy accept; }`,
    `flush chain ${table} input`,
    `add rule ${table} input iifname . ip daddr . tcp dport @openings accept`,
    `add rule ${table} input iifname @closed_bridges jump refuse`,
    `add chain ${table} forward { type filter hook forward priority filter - 10; policy accept; }`,
    `flush chain ${table} forward`,
    `add rule ${table} forward iifname vmap @outbound`,
  ];
}

/** One bridge's part: its outbound chain, rebuilt whole, and its entries in the set and map. */
export function bridgeCommands({ bridge, outbound }: BridgeClosure): string[] {
  checkBridge(bridge);
  const table = `inet ${FIREWALL_TABLE}`;
  const chain = outboundChain(bridge);
  const rules =
    outbound === 'nowhere' ? ['jump refuse'] : outboundRules(outbound.resolvers, outbound.allowed);
  return [
    `add chain ${table} ${chain}`,
    `flush chain ${table} ${chain}`,
    ...rules.map((rule) => `add rule ${table} ${chain} ${rule}`),
    `add element ${table} closed_bridges { ${quote(bridge)} }`,
    `add element ${table} outbound { ${quote(bridge)} : jump ${chain} }`,
  ];
}

function outboundRules(resolvers: readonly string[], allowed: readonly Endpoint[]): string[] {
  resolvers.forEach((address, index) => checkAddress(`resolvers[${index}]`, address));
  allowed.forEach((endpoint, index) => checkEndpoint(`allowed[${index}]`, endpoint));
  const rules: string[] = [];
  for (const [family, version] of [
    ['ip', 4],
    ['ip6', 6],
  ] as const) {
    const dns = resolvers.filter((address) => isIP(address) === version);
    const endpoints = allowed.filter((endpoint) => isIP(endpoint.address) === version);
    const blocked = BLOCKED_RANGES.filter(({ cidr }) => cidr.includes(':') === (version === 6));
    if (dns.length > 0) {
      rules.push(`${family} daddr ${list(dns)} meta l4proto { tcp, udp } th dport 53 accept`);
    }
    if (endpoints.length > 0) {
      const pairs = endpoints.map(({ address, port }) => `${address} . ${port}`);
      rules.push(`${family} daddr . tcp dport ${list(pairs)} accept`);
    }
    rules.push(`${family} daddr ${list(blocked.map(({ cidr }) => cidr))} jump refuse`);
  }
  return rules;
}

/** Deletes a set or map element whether or not it exists (nft 1.0 has no "destroy"). */
function idempotentDelete(set: string, element: string, key = element): string[] {
  return [
    `add element inet ${FIREWALL_TABLE} ${set} { ${element} }`,
    `delete element inet ${FIREWALL_TABLE} ${set} { ${key} }`,
  ];
}

const outboundChain = (bridge: string) => `outbound-${bridge}`;
const list = (items: readonly string[]) => `{ ${items.join(', ')} }`;
const quote = (text: string) => `"${text}"`;
const openingKey = ({ bridge, address, port }: HostOpening) =>
  `${quote(bridge)} . ${address} . ${port}`;

function checkBridge(bridge: string): void {
  if (!BRIDGE.test(bridge)) {
    throw new Error(
      `bridge ${JSON.stringify(bridge)}: expected an interface name of 1-15 letters, digits, '.', '_' or '-'`,
    );
  }
}

function checkAddress(field: string, address: string): void {
  if (isIP(address) === 0) {
    throw new Error(`${field}: ${JSON.stringify(address)} is not an IP address`);
  }
}

function checkEndpoint(field: string, { address, port }: Endpoint): void {
  checkAddress(`${field}.address`, address);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`${field}.port: ${port} is not a port (1-65535)`);
  }
}

function checkOpening(opening: HostOpening, index: number): void {
  checkBridge(opening.bridge);
  checkEndpoint(`openings[${index}]`, opening);
  if (isIP(opening.address) !== 4) {
    throw new Error(`openings[${index}].address: ${opening.address} is not an IPv4 address`);
  }
}
