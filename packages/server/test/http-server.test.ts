import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkHealth,
  serveHealth,
  startHttpServer,
  type HttpServer,
  type HttpTimeouts,
} from '../src/index.js';

// Long enough for any request of these tests to arrive, short enough to watch them fire.
const TIMEOUTS: HttpTimeouts = { headersMs: 300, requestMs: 600, idleMs: 400 };

describe('startHttpServer', () => {
  let server: HttpServer;
  let base: string;
  beforeAll(async () => {
    server = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      timeouts: TIMEOUTS,
      handler: (request, response) => {
        if (request.url === '/healthz') {
          void serveHealth(
            [{ name: 'broken', check: () => Promise.reject(new Error('db down')) }],
            response,
          );
          return;
        }
        if (request.url === '/slow') {
          // Answers after the request timeout: a response may take longer than its request.
          setTimeout(() => response.end('slow'), 2 * TIMEOUTS.requestMs);
          return;
        }
        if (request.url === '/early') {
          // Refused from its headers, its body unread.
          response.writeHead(401);
          response.end('refused');
          return;
        }
        if (request.url === '/read') {
          request.resume();
          request.on('end', () => response.end('read'));
          return;
        }
        response.writeHead(200, { 'content-type': 'text/plain' });
        response.end(`http ${request.httpVersion}`);
      },
    });
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(async () => {
    await server.close(100);
  });

  it('answers HTTP/1.1 and h2c (prior knowledge) on the same port', async () => {
    expect(await (await fetch(`${base}/`)).text()).toBe('http 1.1');
    const session = http2.connect(base);
    try {
      expect(await h2Request(session, '/')).toBe('http 2.0');
    } finally {
      session.close();
    }
  });

  it('reports a failing dependency with 503 and its reason', async () => {
    const response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ status: 'unavailable', checks: { broken: 'db down' } });
  });

  it('closes a connection that sends nothing within the headers timeout', async () => {
    const socket = await connect(server.port);
    const started = Date.now();
    expect(await closed(socket)).toBe('');
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUTS.headersMs - 50);
  });

  it('answers 408 and closes an HTTP/1.1 connection whose headers stall', async () => {
    const socket = await connect(server.port);
    socket.write('POST /read HTTP/1.1\r\nHost: x\r\n');
    expect(await closed(socket)).toMatch(/^HTTP\/1\.1 408/);
  });

  it('closes an HTTP/1.1 connection whose body stalls past the request timeout', async () => {
    const socket = await connect(server.port);
    socket.write('POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc');
    const started = Date.now();
    expect(await closed(socket)).toMatch(/^HTTP\/1\.1 408/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUTS.requestMs - 50);
  });

  it('closes an idle HTTP/1.1 keep-alive connection', async () => {
    const socket = await connect(server.port);
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await closed(socket)).toMatch(/^HTTP\/1\.1 200[^]*http 1\.1/);
  });

  it('closes an HTTP/1.1 connection after answering before the body was through', async () => {
    const socket = await connect(server.port);
    socket.write('POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc');
    const answer = await closed(socket);
    expect(answer).toMatch(/^HTTP\/1\.1 401/);
    expect(answer.toLowerCase()).toContain('connection: close');
  });

  it('keeps an HTTP/1.1 connection whose body was read for the next request', async () => {
    const socket = await connect(server.port);
    const answers = closed(socket);
    socket.write('POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc');
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(await answers).toMatch(/read[^]*http 1\.1/);
  });

  it('closes an h2c connection that opens no stream within the headers timeout', async () => {
    const socket = await connect(server.port);
    socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    await closed(socket);
  });

  it('resets an HTTP/2 stream whose body stalls past the request timeout', async () => {
    const session = http2.connect(base);
    try {
      const stream = session.request({ ':path': '/read', ':method': 'POST' });
      stream.write('partial');
      const code = await new Promise<number>((resolve) =>
        stream.once('close', () => resolve(stream.rstCode ?? -1)),
      );
      expect(code).toBe(http2.constants.NGHTTP2_CANCEL);
    } finally {
      session.destroy();
    }
  });

  it('sends GOAWAY to an idle HTTP/2 session', async () => {
    const session = http2.connect(base);
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
    expect(await h2Request(session, '/')).toBe('http 2.0');
    await goaway;
    session.destroy();
  });

  it('lets a response take longer than the request timeout, over HTTP/1.1 and HTTP/2', async () => {
    expect(await (await fetch(`${base}/slow`)).text()).toBe('slow');
    const session = http2.connect(base);
    try {
      expect(await h2Request(session, '/slow')).toBe('slow');
    } finally {
      session.close();
    }
  });
});

describe('stopping an HTTP server', () => {
  it('refuses new connections but answers the request in progress, then closes', async () => {
    let release: () => void = () => {};
    const received = new Promise<void>((resolve) => {
      release = resolve;
    });
    let answer: () => void = () => {};
    const server = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      timeouts: TIMEOUTS,
      handler: (_request, response) => {
        answer = () => response.end('done');
        release();
      },
    });
    const base = `http://127.0.0.1:${server.port}`;
    const inProgress = fetch(`${base}/slow`).then((response) => response.text());
    await received;

    server.stopListening();
    await expect(fetch(`${base}/new`)).rejects.toThrow();
    answer();
    expect(await inProgress).toBe('done');
    // The keep-alive connection ends with its response, so closing does not wait for the grace.
    const started = Date.now();
    await server.close(10_000);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('checkHealth', () => {
  it('times out a check that never answers', async () => {
    const report = await checkHealth([{ name: 'slow', check: () => new Promise(() => {}) }], 50);
    expect(report).toEqual({ ok: false, checks: { slow: 'no answer within 50 ms' } });
  });
});

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** What the server sent, once it has closed the connection. */
function closed(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', () => {});
    socket.once('close', () => resolve(text));
  });
}

function h2Request(session: http2.ClientHttp2Session, path: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const request = session.request({ ':path': path });
    let text = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (text += chunk));
    request.on('end', () => resolve(text));
    request.on('error', reject);
    request.end();
  });
}
