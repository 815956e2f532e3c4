import ipaddr from 'ipaddr.js';

/** One parsed `permissions.allow_net` entry. `port` absent: any port (like Deno's --allow-net). */
export interface AllowNetEntry {
  /** Lowercased hostname without trailing dot, dotted-quad IPv4, or RFC 5952 IPv6 (no brackets). */
  readonly host: string;
  readonly port?: number;
}

/** The outcome of checking one requested target against an allow-list. */
export type TargetDecision =
  | { readonly allowed: true; readonly host: string; readonly port: number; readonly ip: boolean }
  | { readonly allowed: false; readonly reason: string };

interface ParsedHost {
  host: string;
  ip: boolean;
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const DOTTED_QUAD =
  /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
// WHATWG URL parsers (and most resolvers) read a host whose last label is a number as IPv4.
const NUMERIC_PART = /^(?:\d+|0x[0-9a-f]*)$/i;
const PORT = /^[1-9]\d{0,4}$/;

const RANGE_NAMES: Record<string, string> = {
  private: 'a private',
  loopback: 'a loopback',
  linkLocal: 'a link-local',
  uniqueLocal: 'a unique-local',
  carrierGradeNat: 'a carrier-grade NAT',
  unspecified: 'an unspecified',
  broadcast: 'a broadcast',
  multicast: 'a multicast',
  ipv4Compatible: 'an IPv4-compatible IPv6',
  internalReserved: 'a reserved (internal-use)',
};

/**
 * Validates one `permissions.allow_net` entry: `host` or `host:port`, where host is an RFC 1123
 * name, a dotted-quad IPv4 address or a bracketed IPv6 address. Returns the entry or a problem.
 */
export function parseAllowNetEntry(entry: string): AllowNetEntry | string {
  const split = splitHostPort(entry);
  if (typeof split === 'string') return split;
  const parsed = parseHost(split.host);
  if (typeof parsed === 'string') return parsed;
  if (parsed.ip && !isPublicAddress(parsed.host)) {
    return `${JSON.stringify(entry)} is ${describeAddress(parsed.host)}; sandboxes may never reach it`;
  }
  return split.port === undefined ? { host: parsed.host } : { host: parsed.host, port: split.port };
}

/** Parses a whole allow-list; throws listing every bad entry (callers validated it already). */
export function parseAllowNet(entries: readonly string[]): AllowNetEntry[] {
  const parsed = entries.map(parseAllowNetEntry);
  const problems = parsed.filter((entry) => typeof entry === 'string');
  if (problems.length > 0) throw new Error(`invalid allow_net: ${problems.join('; ')}`);
  return parsed as AllowNetEntry[];
}

/**
 * Checks a requested `host:port` authority (a CONNECT target or an absolute URL's authority)
 * against the allow-list. Only names are matched by name; an IP literal matches only the same
 * canonical IP entry, and non-canonical spellings of an address are refused by name.
 */
export function decideTarget(
  allowNet: readonly AllowNetEntry[],
  authority: string,
  defaultPort?: number,
): TargetDecision {
  const split = splitHostPort(authority);
  if (typeof split === 'string') return { allowed: false, reason: split };
  const parsed = parseHost(split.host);
  if (typeof parsed === 'string') return { allowed: false, reason: parsed };
  const port = split.port ?? defaultPort;
  if (port === undefined) {
    return { allowed: false, reason: `${JSON.stringify(authority)} has no port` };
  }
  const listed = allowNet.some(
    (entry) => entry.host === parsed.host && (entry.port === undefined || entry.port === port),
  );
  if (!listed) {
    return {
      allowed: false,
      reason: `${formatTarget(parsed.host, port)} is not in permissions.allow_net`,
    };
  }
  return { allowed: true, host: parsed.host, port, ip: parsed.ip };
}

/** One address block no sandbox may reach; `kind` names it in refusals. */
export interface BlockedRange {
  readonly cidr: string;
  readonly kind: string;
}

/**
 * Every address block a sandbox may never reach: the egress proxy refuses them, and the host
 * firewall rejects them from the setup network. First match names the range, so narrower
 * blocks come before wider ones. Everything else counts as public, including the reserved
 * blocks that lead nowhere inside the host's networks (IPv4 documentation ranges, 240/4,
 * 2001:db8::/32): a TLS-intercepting proxy may answer on one (here registry.npmjs.org resolves
 * to 203.0.113.80). IPv4-mapped IPv6 addresses are judged by the IPv4 address they carry.
 */
export const BLOCKED_RANGES: readonly BlockedRange[] = [
  { cidr: '0.0.0.0/8', kind: 'unspecified' },
  { cidr: '10.0.0.0/8', kind: 'private' },
  { cidr: '100.64.0.0/10', kind: 'carrierGradeNat' },
  { cidr: '127.0.0.0/8', kind: 'loopback' },
  // Includes 169.254.169.254, the cloud metadata address.
  { cidr: '169.254.0.0/16', kind: 'linkLocal' },
  { cidr: '172.16.0.0/12', kind: 'private' },
  // Reserved blocks that networks do use inside: protocol assignments, benchmarking.
  { cidr: '192.0.0.0/24', kind: 'internalReserved' },
  { cidr: '192.31.196.0/24', kind: 'as112' },
  { cidr: '192.52.193.0/24', kind: 'amt' },
  { cidr: '192.168.0.0/16', kind: 'private' },
  { cidr: '192.175.48.0/24', kind: 'as112' },
  { cidr: '198.18.0.0/15', kind: 'internalReserved' },
  { cidr: '224.0.0.0/4', kind: 'multicast' },
  { cidr: '255.255.255.255/32', kind: 'broadcast' },
  { cidr: '::/128', kind: 'unspecified' },
  { cidr: '::1/128', kind: 'loopback' },
  // The deprecated IPv4-compatible form, ::a.b.c.d.
  { cidr: '::/96', kind: 'ipv4Compatible' },
  { cidr: '::ffff:0:0:0/96', kind: 'rfc6145' },
  { cidr: '64:ff9b::/96', kind: 'rfc6052' },
  { cidr: '64:ff9b:1::/48', kind: 'rfc6052' },
  { cidr: '100::/64', kind: 'discard' },
  { cidr: '2001::/32', kind: 'teredo' },
  { cidr: '2001:2::/48', kind: 'benchmarking' },
  { cidr: '2001:3::/32', kind: 'amt' },
  { cidr: '2001:4:112::/48', kind: 'as112v6' },
  { cidr: '2001:10::/28', kind: 'deprecatedOrchid' },
  { cidr: '2001:20::/28', kind: 'orchid2' },
  { cidr: '2001:30::/28', kind: 'droneRemoteIdProtocolEntityTags' },
  { cidr: '2002::/16', kind: '6to4' },
  { cidr: '2620:4f:8000::/48', kind: 'as112v6' },
  { cidr: '5f00::/16', kind: 'segmentRouting' },
  { cidr: 'fc00::/7', kind: 'uniqueLocal' },
  { cidr: 'fe80::/10', kind: 'linkLocal' },
  { cidr: 'fec0::/10', kind: 'deprecatedSiteLocal' },
  { cidr: 'ff00::/8', kind: 'multicast' },
];

const BLOCKED = BLOCKED_RANGES.map((range) => ({ ...range, parsed: ipaddr.parseCIDR(range.cidr) }));

/**
 * True for addresses a sandbox may reach: valid, canonical, and in none of BLOCKED_RANGES
 * (which refuse loopback, private, link-local, unique-local, CGNAT, multicast, and IPv6 forms
 * that embed or translate to IPv4).
 */
export function isPublicAddress(address: string): boolean {
  return addressRange(address) === 'public';
}

/** "a private address", "a link-local address", ... for refusal messages. */
export function describeAddress(address: string): string {
  const range = addressRange(address);
  return `${RANGE_NAMES[range] ?? `a non-public (${range})`} address`;
}

/** `host:port`, with brackets around an IPv6 host. */
export function formatTarget(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The kind of the first blocked range holding the address, 'public', or 'invalid'. */
function addressRange(address: string): string {
  // Resolvers answer in canonical forms; anything else is not trusted to mean what it seems.
  const text = address.includes(':') ? canonicalIPv6(address) : address;
  if (text === undefined || !(text.includes(':') || DOTTED_QUAD.test(text))) return 'invalid';
  const ip = ipaddr.process(text);
  const blocked = BLOCKED.find(({ parsed }) => ip.kind() === parsed[0].kind() && ip.match(parsed));
  return blocked?.kind ?? 'public';
}

/** Splits `host[:port]` / `[v6][:port]`; the host comes back without brackets. */
function splitHostPort(authority: string): { host: string; port?: number } | string {
  const problem = `${JSON.stringify(authority)} is not a host or host:port`;
  let host: string;
  let rest: string;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0) return problem;
    host = authority.slice(1, end);
    rest = authority.slice(end + 1);
    if (!host.includes(':')) return problem;
  } else {
    const colon = authority.indexOf(':');
    host = colon < 0 ? authority : authority.slice(0, colon);
    rest = colon < 0 ? '' : authority.slice(colon);
  }
  if (rest === '') return { host };
  if (!rest.startsWith(':') || !PORT.test(rest.slice(1))) return problem;
  const port = Number(rest.slice(1));
  return port <= 65535 ? { host, port } : problem;
}

/** A host as written (no brackets, no port) to its canonical form, or the problem with it. */
function parseHost(raw: string): ParsedHost | string {
  const problem = `${JSON.stringify(raw)} is not a host or host:port`;
  if (raw.includes(':')) return parseIPv6(raw) ?? problem;
  const host = (raw.endsWith('.') ? raw.slice(0, -1) : raw).toLowerCase();
  const labels = host.split('.');
  if (NUMERIC_PART.test(labels.at(-1) ?? '')) {
    if (DOTTED_QUAD.test(host)) return { host, ip: true };
    if (!labels.every((label) => NUMERIC_PART.test(label))) return problem;
    return `${JSON.stringify(raw)} is an IPv4 address written in ${ipv4Trick(labels)}; only the dotted-quad form is accepted`;
  }
  if (host.length > 253 || !labels.every((label) => LABEL.test(label))) return problem;
  return { host, ip: false };
}

function ipv4Trick(parts: string[]): string {
  if (parts.some((part) => /^0x/i.test(part))) return 'hex form';
  if (parts.some((part) => /^0\d/.test(part))) return 'octal form';
  if (parts.length === 1) return 'decimal form';
  if (parts.length < 4) return 'short form';
  return 'an invalid form';
}

function parseIPv6(raw: string): ParsedHost | string | undefined {
  const canonical = canonicalIPv6(raw);
  if (canonical === undefined) return undefined;
  const ip = ipaddr.IPv6.parse(canonical);
  if (ip.isIPv4MappedAddress()) {
    return `[${raw}] is an IPv4-mapped IPv6 address (${ip.toIPv4Address().toString()}); write IPv4 as a dotted quad`;
  }
  if (ip.range() === 'unicast' && isIPv4Compatible(ip)) {
    return `[${raw}] is an IPv4-compatible IPv6 address; write IPv4 as a dotted quad`;
  }
  return { host: ip.toRFC5952String(), ip: true };
}

/**
 * The WHATWG form of an IPv6 address (hex only), or undefined if it is not one. ipaddr.js reads
 * `::1.2.3.4` as IPv4-mapped; the URL parser reads it right, as `::102:304`. Zone ids
 * (`fe80::1%eth0`) name a local interface and are refused with the rest.
 */
function canonicalIPv6(text: string): string | undefined {
  if (!/^[0-9a-f:.]+$/i.test(text)) return undefined;
  try {
    const canonical = new URL(`http://[${text}]/`).hostname.slice(1, -1);
    return ipaddr.IPv6.isValid(canonical) ? canonical : undefined;
  } catch {
    return undefined;
  }
}

function isIPv4Compatible(ip: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  return ip.kind() === 'ipv6' && ip.match(ipaddr.parse('::'), 96);
}
