import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHealth, serveHealth, startHttpServer, type HttpServer } from '../src/index.js';

describe('startHttpServer', () => {
  let server: HttpServer;
  let base: string;
  beforeAll(async () => {
    server = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      handler: (request, response) => {
        if (request.url === '/healthz') {
          void serveHealth(
            [{ name: 'broken', check: () => Promise.reject(new Error('db down')) }],
            response,
          );
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
      const body = await new Promise<string>((resolve, reject) => {
        const request = session.request({ ':path': '/' });
        let text = '';
        request.setEncoding('utf8');
        request.on('data', (chunk: string) => (text += chunk));
        request.on('end', () => resolve(text));
        request.on('error', reject);
        request.end();
      });
      expect(body).toBe('http 2.0');
    } finally {
      session.close();
    }
  });

  it('reports a failing dependency with 503 and its reason', async () => {
    const response = await fetch(`${base}/healthz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ status: 'unavailable', checks: { broken: 'db down' } });
  });
});

describe('stopping an HTTP server', () => {
  it('refuses new connections but answers the request in progress, then closes', async () => {
    let release: () => void = () => {};
    const server = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      handler: (_request, response) => {
        release = () => response.end('done');
      },
    });
    const base = `http://127.0.0.1:${server.port}`;
    const inProgress = fetch(`${base}/slow`).then((response) => response.text());
    await new Promise((resolve) => setTimeout(resolve, 100));

    server.stopListening();
    await expect(fetch(`${base}/new`)).rejects.toThrow();
    release();
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
