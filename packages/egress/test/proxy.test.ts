import { createLogger } from '@assist-tee/logger';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  isPublicAddress,
  startEgressProxy,
  type EgressGrant,
  type EgressLookup,
  type EgressProxy,
} from '../src/index.js';

// Every log line the proxies write, to check what they say and that no token leaks.
const logged: string[] = [];
const logger = createLogger(
  { level: 'debug' },
  {
    hooks: {
      logMethod(args) {
        logged.push(JSON.stringify(args));
      },
    },
  },
);

const zones: Record<string, string[]> = {
  'echo.test': ['127.0.0.1'],
  'web.test': ['127.0.0.1'],
  'closed.test': ['127.0.0.1'],
  'loopback.test': ['127.0.0.1'],
  'private.test': ['10.0.0.5'],
  'metadata.test': ['169.254.169.254'],
  'mixed.test': ['93.184.216.34', '10.0.0.5'],
  'mapped.test': ['::ffff:127.0.0.1'],
};
const lookups: string[] = [];
const lookup: EgressLookup = (hostname) => {
  lookups.push(hostname);
  const addresses = zones[hostname];
  if (!addresses) return Promise.reject(Object.assign(new Error('no'), { code: 'ENOTFOUND' }));
  return Promise.resolve(addresses.map((address) => ({ address })));
};

interface ConnectResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  socket: net.Socket;
  head: Buffer;
}

function authorization(token: string): string {
  return `Basic ${Buffer.from(`${token}:x`).toString('base64')}`;
}

function connectThrough(
  proxy: EgressProxy,
  authority: string,
  token: string | undefined,
): Promise<ConnectResult> {
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: proxy.host,
      port: proxy.port,
      method: 'CONNECT',
      path: authority,
      headers: token === undefined ? {} : { 'proxy-authorization': authorization(token) },
    });
    // Node reports every answer to CONNECT here, 200 or not, with the raw socket.
    request.once('connect', (response: http.IncomingMessage, socket: net.Socket, head: Buffer) =>
      resolve({ status: response.statusCode ?? 0, headers: response.headers, socket, head }),
    );
    request.once('error', reject);
    request.end();
  });
}

async function readAll(socket: net.Socket, head: Buffer = Buffer.alloc(0)): Promise<string> {
  const chunks = [head];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function readSome(socket: net.Socket, length: number): Promise<string> {
  let text = '';
  while (text.length < length) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    text += chunk.toString('utf8');
  }
  return text;
}

interface ProxiedResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function requestThrough(
  proxy: EgressProxy,
  options: { method?: string; url: string; token?: string; headers?: http.OutgoingHttpHeaders },
  body: string[] = [],
): Promise<ProxiedResponse> {
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: proxy.host,
      port: proxy.port,
      method: options.method ?? 'GET',
      path: options.url,
      agent: false,
      headers: {
        ...(options.token === undefined
          ? {}
          : { 'proxy-authorization': authorization(options.token) }),
        ...options.headers,
      },
    });
    request.once('response', (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.once('end', () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }),
      );
    });
    request.once('error', reject);
    for (const chunk of body) request.write(chunk);
    request.end();
  });
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  const port = await listen(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('startEgressProxy', () => {
  const sockets = new Set<net.Socket>();
  const echo = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  const web = http.createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (body += chunk));
    request.once('end', () => {
      response.writeHead(201, { 'content-type': 'application/json', 'x-upstream': 'yes' });
      response.end(
        JSON.stringify({
          method: request.method,
          url: request.url,
          headers: request.headers,
          body,
        }),
      );
    });
  });
  let echoPort: number;
  let webPort: number;
  // Reaches test upstreams on 127.0.0.1; the default policy refuses them like any loopback.
  let proxy: EgressProxy;
  let strict: EgressProxy;
  let grant: EgressGrant;
  let strictGrant: EgressGrant;

  beforeAll(async () => {
    echoPort = await listen(echo);
    webPort = await listen(web);
    proxy = await startEgressProxy({
      host: '127.0.0.1',
      port: 0,
      logger,
      lookup,
      isAllowedAddress: (address) => address === '127.0.0.1' || isPublicAddress(address),
    });
    strict = await startEgressProxy({ host: '127.0.0.1', port: 0, logger, lookup });
    const allowNet = [
      `echo.test:${echoPort}`,
      'web.test',
      'closed.test',
      'loopback.test',
      'private.test',
      'metadata.test',
      'mixed.test',
      'mapped.test',
      'unknown.test',
      '93.184.216.34:443',
    ];
    grant = proxy.grant(allowNet);
    strictGrant = strict.grant(allowNet);
  });

  afterAll(async () => {
    await proxy.close();
    await strict.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => echo.close(resolve));
    web.closeAllConnections();
    await new Promise((resolve) => web.close(resolve));
  });

  test('binds the requested host and an ephemeral port, and builds proxy URLs', () => {
    expect(proxy.host).toBe('127.0.0.1');
    expect(proxy.port).toBeGreaterThan(0);
    expect(grant.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(grant.token).not.toBe(strictGrant.token);
    expect(grant.proxyUrl('172.30.0.1')).toBe(`http://${grant.token}:x@172.30.0.1:${proxy.port}`);
    expect(grant.proxyUrl('fd00::1')).toBe(`http://${grant.token}:x@[fd00::1]:${proxy.port}`);
  });

  test('grant refuses an invalid allow-list', () => {
    expect(() => proxy.grant(['example.com', '10.0.0.1'])).toThrow(
      '"10.0.0.1" is a private address',
    );
  });

  test('CONNECT to a listed name tunnels bytes both ways to the address it resolved to', async () => {
    lookups.length = 0;
    const { status, socket } = await connectThrough(proxy, `echo.test:${echoPort}`, grant.token);
    expect(status).toBe(200);
    expect(lookups).toEqual(['echo.test']);
    socket.write('ping');
    expect(await readSome(socket, 4)).toBe('ping');
    socket.write('pong'.repeat(10_000));
    expect(await readSome(socket, 40_000)).toBe('pong'.repeat(10_000));
    socket.end();
    expect(await readAll(socket)).toBe('');
  });

  test('bytes sent right behind the CONNECT request reach the upstream', async () => {
    const socket = net.connect(proxy.port, '127.0.0.1');
    socket.write(
      `CONNECT echo.test:${echoPort} HTTP/1.1\r\nHost: echo.test:${echoPort}\r\n` +
        `Proxy-Authorization: ${authorization(grant.token)}\r\n\r\nearly`,
    );
    const text = await readSome(socket, 'HTTP/1.1 200 Connection Established\r\n\r\nearly'.length);
    expect(text).toBe('HTTP/1.1 200 Connection Established\r\n\r\nearly');
    socket.destroy();
  });

  test('CONNECT to an unlisted host or port is refused with 403 and the reason', async () => {
    for (const [authority, reason] of [
      ['example.com:443', 'example.com:443 is not in permissions.allow_net'],
      [`echo.test:${echoPort + 1}`, `echo.test:${echoPort + 1} is not in permissions.allow_net`],
      ['93.184.216.34:80', '93.184.216.34:80 is not in permissions.allow_net'],
    ] as const) {
      const { status, headers, socket, head } = await connectThrough(proxy, authority, grant.token);
      expect(status).toBe(403);
      expect(headers['x-assist-tee-egress']).toBe(reason);
      expect(await readAll(socket, head)).toBe(`${reason}\n`);
    }
  });

  test('missing, unknown and revoked tokens get 407 with a Basic challenge', async () => {
    const revoked = proxy.grant([`echo.test:${echoPort}`]);
    revoked.revoke();
    for (const [token, reason] of [
      [undefined, 'proxy credentials are missing'],
      ['not-a-token', 'the proxy token is unknown or revoked'],
      [strictGrant.token, 'the proxy token is unknown or revoked'],
      [revoked.token, 'the proxy token is unknown or revoked'],
    ] as const) {
      const { status, headers, socket } = await connectThrough(
        proxy,
        `echo.test:${echoPort}`,
        token,
      );
      expect(status).toBe(407);
      expect(headers['proxy-authenticate']).toBe('Basic realm="assist-tee"');
      expect(headers['x-assist-tee-egress']).toBe(reason);
      socket.destroy();
      const response = await requestThrough(proxy, {
        url: `http://web.test:${webPort}/`,
        ...(token === undefined ? {} : { token }),
      });
      expect(response.status).toBe(407);
      expect(response.headers['proxy-authenticate']).toBe('Basic realm="assist-tee"');
      expect(response.body).toBe(`${reason}\n`);
    }
  });

  test('revoke() ends the open tunnels of that grant', async () => {
    const shortLived = proxy.grant([`echo.test:${echoPort}`]);
    const { status, socket } = await connectThrough(
      proxy,
      `echo.test:${echoPort}`,
      shortLived.token,
    );
    expect(status).toBe(200);
    const closed = once(socket, 'close');
    shortLived.revoke();
    await closed;
  });

  test('plain HTTP requests are forwarded with their body, minus hop-by-hop headers', async () => {
    const response = await requestThrough(
      proxy,
      {
        method: 'POST',
        url: `http://WEB.test:${webPort}/echo?x=1`,
        token: grant.token,
        headers: {
          host: 'evil.test',
          connection: 'keep-alive, x-hop',
          'x-hop': 'dropped',
          'x-end': 'kept',
          'content-type': 'text/plain',
        },
      },
      ['hello ', 'world'],
    );
    expect(response.status).toBe(201);
    expect(response.headers['x-upstream']).toBe('yes');
    const seen = JSON.parse(response.body);
    expect(seen).toMatchObject({ method: 'POST', url: '/echo?x=1', body: 'hello world' });
    expect(seen.headers).toMatchObject({
      host: `WEB.test:${webPort}`,
      'x-end': 'kept',
      'content-type': 'text/plain',
    });
    expect(seen.headers).not.toHaveProperty('proxy-authorization');
    expect(seen.headers).not.toHaveProperty('x-hop');

    const get = await requestThrough(proxy, {
      url: `http://web.test:${webPort}`,
      token: grant.token,
    });
    expect(JSON.parse(get.body)).toMatchObject({ method: 'GET', url: '/', body: '' });
  });

  test('plain HTTP to an unlisted host is refused with 403; origin-form with 400', async () => {
    const response = await requestThrough(proxy, {
      url: 'http://example.com/',
      token: grant.token,
    });
    expect(response).toMatchObject({
      status: 403,
      headers: { 'x-assist-tee-egress': 'example.com:80 is not in permissions.allow_net' },
      body: 'example.com:80 is not in permissions.allow_net\n',
    });
    expect((await requestThrough(proxy, { url: '/', token: grant.token })).status).toBe(400);
  });

  test.each([
    ['loopback.test', '127.0.0.1, a loopback address'],
    ['private.test', '10.0.0.5, a private address'],
    ['metadata.test', '169.254.169.254, a link-local address'],
    ['mixed.test', '10.0.0.5, a private address'],
    ['mapped.test', '::ffff:127.0.0.1, a loopback address'],
  ])('a listed name that resolves to a non-public address is refused (%s)', async (name, why) => {
    const reason = `${name} resolves to ${why}`;
    const tunnel = await connectThrough(strict, `${name}:443`, strictGrant.token);
    expect(tunnel.status).toBe(403);
    expect(tunnel.headers['x-assist-tee-egress']).toBe(reason);
    tunnel.socket.destroy();
    const response = await requestThrough(strict, {
      url: `http://${name}/latest/meta-data/`,
      token: strictGrant.token,
    });
    expect(response).toMatchObject({ status: 403, body: `${reason}\n` });
  });

  test.each([
    ['2130706433', 'decimal form'],
    ['0x7f.1', 'hex form'],
    ['0177.0.0.1', 'octal form'],
    ['127.1', 'short form'],
    ['[::ffff:127.0.0.1]', 'IPv4-mapped IPv6'],
    ['[::ffff:7f00:1]', 'IPv4-mapped IPv6'],
    ['[::127.0.0.1]', 'IPv4-compatible IPv6'],
  ])('the IP-literal trick %s is refused, named', async (host, trick) => {
    const tunnel = await connectThrough(proxy, `${host}:${echoPort}`, grant.token);
    expect(tunnel.status).toBe(403);
    expect(tunnel.headers['x-assist-tee-egress']).toContain(trick);
    tunnel.socket.destroy();
    const response = await requestThrough(proxy, {
      url: `http://${host}:${webPort}/`,
      token: grant.token,
    });
    expect(response.status).toBe(403);
    expect(response.body).toContain(trick);
  });

  test('an unreachable or unresolvable upstream gets 502 with the reason', async () => {
    const port = await closedPort();
    const tunnel = await connectThrough(proxy, `closed.test:${port}`, grant.token);
    expect(tunnel.status).toBe(502);
    expect(tunnel.headers['x-assist-tee-egress']).toBe(
      `cannot connect to closed.test:${port}: ECONNREFUSED`,
    );
    tunnel.socket.destroy();
    const response = await requestThrough(proxy, {
      url: 'http://unknown.test/',
      token: grant.token,
    });
    expect(response).toMatchObject({
      status: 502,
      body: 'cannot resolve unknown.test: ENOTFOUND\n',
    });
  });

  test('decisions are logged with the token prefix, never the whole token', () => {
    const all = logged.join('\n');
    expect(all).toContain(`"grant":"${grant.token.slice(0, 6)}"`);
    expect(all).toContain('not in permissions.allow_net');
    expect(all).not.toContain(grant.token);
    expect(all).not.toContain(strictGrant.token);
  });
});

describe('EgressProxy.close', () => {
  test('ends open tunnels and stops listening', async () => {
    const echo = net.createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.pipe(socket);
    });
    const echoPort = await listen(echo);
    const proxy = await startEgressProxy({
      host: '127.0.0.1',
      port: 0,
      logger,
      lookup,
      isAllowedAddress: (address) => address === '127.0.0.1',
    });
    const grant = proxy.grant([`echo.test:${echoPort}`]);
    const { status, socket } = await connectThrough(proxy, `echo.test:${echoPort}`, grant.token);
    expect(status).toBe(200);
    socket.write('still here');
    expect(await readSome(socket, 10)).toBe('still here');
    const closed = once(socket, 'close');
    await proxy.close();
    await closed;
    await expect(connectThrough(proxy, `echo.test:${echoPort}`, grant.token)).rejects.toThrow(
      'ECONNREFUSED',
    );
    await new Promise((resolve) => echo.close(resolve));
  });
});
