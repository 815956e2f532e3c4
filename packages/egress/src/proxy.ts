import type { Logger } from '@assist-tee/logger';
import { randomBytes } from 'node:crypto';
import dns from 'node:dns';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import {
  decideTarget,
  describeAddress,
  formatTarget,
  isPublicAddress,
  parseAllowNet,
  type AllowNetEntry,
} from './policy.js';

/** Resolves a name to every address it has; the default is `dns.promises.lookup`. */
export type EgressLookup = (hostname: string) => Promise<readonly { address: string }[]>;

export interface EgressProxyOptions {
  host: string;
  /** 0 picks a free port; read the bound one from `EgressProxy.port`. */
  port: number;
  logger: Logger;
  lookup?: EgressLookup;
  /**
   * For tests only, to reach an upstream on 127.0.0.1: which resolved addresses may be dialled.
   * Defaults to `isPublicAddress`; allow-list entries are validated with it regardless.
   */
  isAllowedAddress?: (address: string) => boolean;
  connectTimeoutMs?: number;
}

export interface EgressProxy {
  /** The address and port actually bound. */
  readonly host: string;
  readonly port: number;
  /** Registers an allow-list; throws if an entry does not pass `parseAllowNetEntry`. */
  grant(allowNet: readonly string[]): EgressGrant;
  /** Stops listening and destroys every open tunnel and request. */
  close(): Promise<void>;
}

export interface EgressGrant {
  /** The proxy credential: random, 192 bits. Never log it whole. */
  readonly token: string;
  /** `http://<token>:x@host:port`, for a sandbox's HTTP_PROXY / HTTPS_PROXY. */
  proxyUrl(host: string): string;
  /** Refuses the token from now on and ends its open connections. */
  revoke(): void;
}

interface Grant {
  allowNet: AllowNetEntry[];
  /** First characters of the token, for logs. */
  tag: string;
  /** Set by revoke() and close(): a connection opened meanwhile is dropped, not tracked. */
  revoked: boolean;
  sockets: Set<Duplex>;
}

/** A refusal or failure answered to the client: status and a one-line reason. */
class Refusal extends Error {
  constructor(
    readonly status: 403 | 407 | 502,
    message: string,
  ) {
    super(message);
  }
}

const STATUS_TEXT = {
  400: 'Bad Request',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  502: 'Bad Gateway',
};
const REALM = 'Basic realm="assist-tee"';
// Hop-by-hop headers (RFC 9110 7.6.1) and our own credential never travel upstream.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

const defaultLookup: EgressLookup = (hostname) =>
  dns.promises.lookup(hostname, { all: true, order: 'verbatim' });

/**
 * The forward proxy sandboxes with `permissions.allow_net` reach the network through: CONNECT
 * tunnels and absolute-form plain-HTTP requests, authenticated by a per-execution token and
 * checked against that execution's allow-list and against non-public addresses.
 */
export async function startEgressProxy(options: EgressProxyOptions): Promise<EgressProxy> {
  const { logger } = options;
  const lookup = options.lookup ?? defaultLookup;
  const isAllowedAddress = options.isAllowedAddress ?? isPublicAddress;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const grants = new Map<string, Grant>();
  // CONNECT sockets leave the HTTP server's bookkeeping: close() must end them itself.
  const connectSockets = new Set<net.Socket>();

  function authenticate(req: http.IncomingMessage): Grant {
    const encoded = /^basic\s+(\S+)\s*$/i.exec(req.headers['proxy-authorization'] ?? '')?.[1];
    if (encoded === undefined) throw new Refusal(407, 'proxy credentials are missing');
    const token = Buffer.from(encoded, 'base64').toString('utf8').split(':')[0] ?? '';
    const grant = grants.get(token);
    if (!grant) throw new Refusal(407, 'the proxy token is unknown or revoked');
    return grant;
  }

  /** Checks the target, resolves it, checks every address, and connects to the one checked. */
  async function open(grant: Grant, authority: string, defaultPort?: number): Promise<net.Socket> {
    const decision = decideTarget(grant.allowNet, authority, defaultPort);
    if (!decision.allowed) throw new Refusal(403, decision.reason);
    const target = formatTarget(decision.host, decision.port);
    let addresses: string[];
    if (decision.ip) {
      addresses = [decision.host];
    } else {
      try {
        addresses = (await lookup(decision.host)).map((entry) => entry.address);
      } catch (error) {
        throw new Refusal(502, `cannot resolve ${decision.host}: ${errorCode(error)}`);
      }
      if (addresses.length === 0) throw new Refusal(502, `${decision.host} has no address`);
    }
    // Any bad address refuses the name: a resolver that mixes in a private one is not trusted.
    const bad = addresses.find((address) => !isAllowedAddress(address));
    if (bad !== undefined) {
      throw new Refusal(403, `${decision.host} resolves to ${bad}, ${describeAddress(bad)}`);
    }
    let lastError: unknown;
    for (const address of addresses) {
      try {
        return await connect(address, decision.port, connectTimeoutMs);
      } catch (error) {
        lastError = error;
      }
    }
    throw new Refusal(502, `cannot connect to ${target}: ${errorCode(lastError)}`);
  }

  function track(grant: Grant, ...streams: Duplex[]): void {
    for (const stream of streams) {
      grant.sockets.add(stream);
      stream.once('close', () => grant.sockets.delete(stream));
    }
  }

  function revoke(grant: Grant): void {
    grant.revoked = true;
    for (const socket of grant.sockets) socket.destroy();
  }

  function log(grant: Grant | undefined, target: string, outcome: string): void {
    logger.debug({ grant: grant?.tag, target, outcome }, 'egress');
  }

  async function onConnect(req: http.IncomingMessage, client: net.Socket, head: Buffer) {
    connectSockets.add(client);
    client.once('close', () => connectSockets.delete(client));
    client.on('error', () => client.destroy());
    const target = req.url ?? '';
    let grant: Grant | undefined;
    try {
      grant = authenticate(req);
      const upstream = await open(grant, target);
      if (client.destroyed || grant.revoked) {
        upstream.destroy();
        return;
      }
      track(grant, client, upstream);
      log(grant, target, `tunnel to ${upstream.remoteAddress}`);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      pipeline(client, upstream, client, () => {
        client.destroy();
        upstream.destroy();
      });
    } catch (error) {
      const refusal = asRefusal(error);
      log(grant, target, refusal.message);
      // Drain what the client sent meanwhile (closing on unread data resets the connection and
      // can lose the answer), and do not wait for long on a client that keeps it open.
      client.resume();
      client.end(rawResponse(refusal.status, refusal.message));
      client.setTimeout(5_000, () => client.destroy());
    }
  }

  async function onRequest(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = /^http:\/\/([^/?#]*)(.*)$/i.exec(req.url ?? '');
    if (!url) {
      reply(res, 400, 'this is a forward proxy: send absolute http:// URLs or CONNECT');
      return;
    }
    const authority = url[1] ?? '';
    let grant: Grant | undefined;
    let upstream: net.Socket;
    try {
      grant = authenticate(req);
      upstream = await open(grant, authority, 80);
    } catch (error) {
      const refusal = asRefusal(error);
      log(grant, authority, refusal.message);
      reply(res, refusal.status, refusal.message);
      req.resume();
      return;
    }
    if (grant.revoked) {
      upstream.destroy();
      res.destroy();
      return;
    }
    // Only the upstream socket: the client's may be kept alive for other tokens' requests.
    track(grant, upstream);
    log(grant, authority, `forward to ${upstream.remoteAddress}`);
    const path = url[2] ?? '';
    const upstreamReq = http.request({
      createConnection: () => upstream,
      method: req.method,
      path: path.startsWith('/') ? path : `/${path}`,
      // RFC 9112 3.2.2: the absolute URL's authority, not the client's Host header, is the host.
      headers: forwardHeaders(req.rawHeaders, authority),
      setHost: false,
    });
    upstreamReq.on('response', (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, forwardHeaders(upstreamRes.rawHeaders));
      pipeline(upstreamRes, res, () => upstream.destroy());
    });
    upstreamReq.on('error', (error) => {
      if (!res.headersSent) reply(res, 502, `${authority} failed: ${errorCode(error)}`);
      else res.destroy();
    });
    // A client that goes away mid-request takes the upstream connection with it.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.on('error', () => upstreamReq.destroy());
    req.pipe(upstreamReq);
  }

  const server = http.createServer();
  server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node hands CONNECT its net.Socket, typed as a plain Duplex.
    void onConnect(req, socket as net.Socket, head);
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    void onRequest(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as net.AddressInfo;

  return {
    host: bound.address,
    port: bound.port,
    grant(allowNet) {
      const token = randomBytes(24).toString('base64url');
      const grant: Grant = {
        allowNet: parseAllowNet(allowNet),
        tag: token.slice(0, 6),
        revoked: false,
        sockets: new Set(),
      };
      grants.set(token, grant);
      return {
        token,
        proxyUrl: (host) => `http://${token}:x@${formatTarget(host, bound.port)}`,
        revoke() {
          grants.delete(token);
          revoke(grant);
        },
      };
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const grant of grants.values()) revoke(grant);
      grants.clear();
      for (const socket of connectSockets) socket.destroy();
      server.closeAllConnections();
      await closed;
    },
  };
}

/** Connects to an IP address (never a name: that was resolved and checked already). */
function connect(address: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address, port });
    const timer = setTimeout(() => socket.destroy(new Error('ETIMEDOUT')), timeoutMs);
    const onError = (error: Error) => {
      clearTimeout(timer);
      reject(error);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** Raw headers (flat name/value list) minus hop-by-hop ones; `host` replaces the Host header. */
function forwardHeaders(rawHeaders: string[], host?: string): string[] {
  const pairs: [string, string][] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    pairs.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
  }
  // Headers named in Connection are hop-by-hop too.
  const named = new Set(
    pairs
      .filter(([name]) => name.toLowerCase() === 'connection')
      .flatMap(([, value]) => value.split(',').map((name) => name.trim().toLowerCase())),
  );
  const kept = pairs.filter(([name]) => {
    const lower = name.toLowerCase();
    return !HOP_BY_HOP.has(lower) && !named.has(lower) && !(host && lower === 'host');
  });
  return (host ? [['Host', host], ...kept] : kept).flat();
}

function asRefusal(error: unknown): Refusal {
  return error instanceof Refusal ? error : new Refusal(502, errorCode(error));
}

function errorCode(error: unknown): string {
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ?? error.message;
  return String(error);
}

// Reasons quote what the client asked for: keep them printable and short for a header.
function sanitize(reason: string): string {
  return reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
}

function responseHeaders(status: number, reason: string): Record<string, string> {
  const headers: Record<string, string> = {
    'Content-Type': 'text/plain; charset=utf-8',
    'X-Assist-Tee-Egress': sanitize(reason),
  };
  if (status === 407) headers['Proxy-Authenticate'] = REALM;
  return headers;
}

function reply(res: http.ServerResponse, status: 400 | 403 | 407 | 502, reason: string): void {
  const body = `${sanitize(reason)}\n`;
  res.writeHead(status, {
    ...responseHeaders(status, reason),
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

function rawResponse(status: 403 | 407 | 502, reason: string): string {
  const body = `${sanitize(reason)}\n`;
  const headers = {
    ...responseHeaders(status, reason),
    'Content-Length': String(body.length),
    Connection: 'close',
  };
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`);
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\n${lines.join('')}\r\n${body}`;
}
