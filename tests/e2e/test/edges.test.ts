import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from '@connectrpc/connect';
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from '@connectrpc/connect-node';
import {
  EnvironmentService,
  ExecutionService,
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from '@assist-tee/proto';
import { type PrivateServer, startPrivateNatsServer } from '@assist-tee/testing';
import { fromJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestStack, type TestStack, useTestStack } from '../src/index.js';

const HEADERS_TIMEOUT_MS = 2_000;
const MiB = 1024 * 1024;

const codeOf = (call: Promise<unknown>) =>
  call.then(
    () => 'ok',
    (error: unknown) => Code[ConnectError.from(error).code],
  );

/** Every protocol and encoding the port serves, as a generated client speaks it. */
function transports(baseUrl: string, apiKey?: string): Record<string, Transport> {
  const bearer: Interceptor = (next) => (request) => {
    request.header.set('authorization', `Bearer ${apiKey}`);
    return next(request);
  };
  const interceptors = apiKey === undefined ? [] : [bearer];
  return {
    'Connect JSON, HTTP/1.1': createConnectTransport({
      baseUrl,
      httpVersion: '1.1',
      interceptors,
    }),
    'Connect binary, HTTP/1.1': createConnectTransport({
      baseUrl,
      httpVersion: '1.1',
      useBinaryFormat: true,
      interceptors,
    }),
    'Connect binary, h2c': createConnectTransport({
      baseUrl,
      httpVersion: '2',
      useBinaryFormat: true,
      interceptors,
    }),
    gRPC: createGrpcTransport({
      baseUrl,
      interceptors,
      // This client queues a whole message before sending it; when the server answers early
      // with more than its session memory (10 MB) still queued, it reports that, not the answer.
      nodeOptions: { maxSessionMemory: 64 },
    }),
    'gRPC-Web': createGrpcWebTransport({ baseUrl, httpVersion: '1.1', interceptors }),
  };
}

/** A JSON value whose text is about `bytes` long. */
const bigData = (bytes: number) => fromJson(ValueSchema, 'x'.repeat(bytes));

/** Reads a server stream to its end; resolves with the messages or rejects with the error. */
async function drain<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const messages: T[] = [];
  for await (const message of stream) messages.push(message);
  return messages;
}

describe('the API port at its edges', () => {
  const tee = useTestStack({ TEE_HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS) });

  it('refuses a 256 MB body without a key before reading it; the process does not grow', async () => {
    const total = 256 * MiB;
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const url = new URL('/assist_tee.v1.ExecutionService/Execute', tee.stack.url);
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    let sent = 0;
    let sentWhenAnswered: number | undefined;
    try {
      // Chunked, with no length to refuse it by: the server could only tell by reading.
      const request = http.request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
      });
      const answered = once(request, 'response').then(async ([response]) => {
        sentWhenAnswered = sent;
        const incoming = response as http.IncomingMessage;
        let text = '';
        for await (const part of incoming) text += String(part);
        return { status: incoming.statusCode, body: JSON.parse(text) as unknown };
      });
      // The server closes the connection once it has answered: the upload is cut short.
      request.on('error', () => {});
      const gone = new Promise((resolve) => request.once('close', resolve));
      request.write('{"environmentId":"');
      while (sent < total && !request.destroyed) {
        sent += chunk.length;
        const drained = new Promise((resolve) => request.once('drain', resolve));
        if (!request.write(chunk)) await Promise.race([drained, gone]);
      }
      request.end('"}');
      const { status, body } = await answered;
      expect(status).toBe(401);
      expect(body).toMatchObject({ code: 'unauthenticated' });
      // Answered from the headers alone, long before the body was through.
      expect(sentWhenAnswered).toBeLessThan(total / 4);
    } finally {
      clearInterval(sampler);
    }
    console.log(
      `256 MB without a key: answered after ${(sentWhenAnswered ?? 0) / MiB} MiB sent; ` +
        `RSS ${(before / MiB).toFixed(0)} → peak ${(peak / MiB).toFixed(0)} MiB`,
    );
    expect(peak - before).toBeLessThan(32 * MiB);
  });

  it('refuses a 256 MB gRPC message without a key over h2c the same way', async () => {
    const total = 256 * MiB;
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    const session = http2.connect(tee.stack.url);
    let sent = 0;
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': '/assist_tee.v1.ExecutionService/Execute',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      stream.on('error', () => {});
      stream.resume();
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) =>
        stream.once('trailers', resolve),
      );
      const closed = new Promise((resolve) => stream.once('close', resolve));
      // One message of 256 MB: its 5-byte envelope, then the bytes.
      const envelope = Buffer.alloc(5);
      envelope.writeUInt32BE(total, 1);
      stream.write(envelope);
      while (sent < total && !stream.closed) {
        sent += chunk.length;
        const drained = new Promise((resolve) => stream.once('drain', resolve));
        if (!stream.write(chunk)) await Promise.race([drained, closed]);
      }
      expect((await trailers)['grpc-status']).toBe(String(Code.Unauthenticated));
      await closed;
      // The server ended the stream long before the message was through.
      expect(sent).toBeLessThan(total / 4);
    } finally {
      clearInterval(sampler);
      session.destroy();
    }
    console.log(
      `256 MB gRPC without a key: stream ended after ${sent / MiB} MiB sent; ` +
        `RSS ${(before / MiB).toFixed(0)} → peak ${(peak / MiB).toFixed(0)} MiB`,
    );
    expect(peak - before).toBeLessThan(32 * MiB);
  });

  it('refuses a call without a key as Unauthenticated in every protocol, body unread', async () => {
    for (const [name, transport] of Object.entries(transports(tee.stack.url))) {
      const client = createClient(ExecutionService, transport);
      const data = bigData(4 * MiB);
      expect([name, await codeOf(client.execute({ environmentId: 'x', data }))]).toEqual([
        name,
        'Unauthenticated',
      ]);
      expect([
        name,
        await codeOf(drain(client.executeStream({ environmentId: 'x', data }))),
      ]).toEqual([name, 'Unauthenticated']);
    }
  });

  it('refuses a request above TEE_MAX_REQUEST_BYTES as ResourceExhausted, naming the limit', async () => {
    const limit = tee.stack.config.http.maxRequestBytes;
    for (const [name, transport] of Object.entries(transports(tee.stack.url, tee.stack.apiKey))) {
      const client = createClient(ExecutionService, transport);
      const error = await client.execute({ environmentId: 'x', data: bigData(limit + MiB) }).then(
        () => undefined,
        (reason: unknown) => ConnectError.from(reason),
      );
      expect([name, error?.code]).toEqual([name, Code.ResourceExhausted]);
      expect(error?.rawMessage).toContain(String(limit));
    }
  });

  it('refuses a deadline longer than the longest call, and takes one that long', async () => {
    const { maxCallTimeoutMs } = tee.stack.config.http;
    const client = createClient(
      EnvironmentService,
      transports(tee.stack.url, tee.stack.apiKey)['Connect JSON, HTTP/1.1']!,
    );
    const error = await client.listEnvironments({}, { timeoutMs: maxCallTimeoutMs + 1 }).then(
      () => undefined,
      (reason: unknown) => ConnectError.from(reason),
    );
    expect(error?.code).toBe(Code.InvalidArgument);
    expect(error?.rawMessage).toContain(String(maxCallTimeoutMs));
    await client.listEnvironments({}, { timeoutMs: maxCallTimeoutMs });
  });

  it('has room under the default limit for the largest event, in its largest encoding', async () => {
    // ~0.9 MB of JSON (under TEE_MAX_EVENT_BYTES), ~5 MB as protobuf binary.
    const data = fromJson(ValueSchema, Array<number>(450_000).fill(0));
    const client = createClient(
      ExecutionService,
      transports(tee.stack.url, tee.stack.apiKey)['Connect binary, HTTP/1.1']!,
    );
    expect(await codeOf(client.execute({ environmentId: 'no-such-environment', data }))).toBe(
      'NotFound',
    );
  });

  it('closes 300 half-open connections by its timeouts while a real call answers quickly', async () => {
    const port = Number(new URL(tee.stack.url).port);
    const partial = [
      '', // nothing at all
      'POST /assist_tee.v1.ExecutionService/Execute HTTP/1.1\r\nHost: x\r\nContent-Ty',
      'PRI * HTTP/2.0\r\n\r\n', // part of the h2c preface
      'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', // the preface, and no stream
    ];
    const opened = Date.now();
    const sockets = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.on('error', () => {});
        socket.resume();
        await once(socket, 'connect');
        socket.write(partial[i % partial.length]!);
        return socket;
      }),
    );
    const closedAt = sockets.map((socket) => once(socket, 'close').then(() => Date.now() - opened));

    const client = createClient(
      EnvironmentService,
      transports(tee.stack.url, tee.stack.apiKey)['Connect JSON, HTTP/1.1']!,
    );
    for (let i = 0; i < 5; i++) {
      const started = Date.now();
      await client.listEnvironments({});
      expect(Date.now() - started).toBeLessThan(500);
    }
    expect(sockets.every((socket) => !socket.closed)).toBe(true);

    const after = await Promise.all(closedAt);
    expect(Math.min(...after)).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 100);
    // Node checks HTTP/1.1 headers once a second.
    expect(Math.max(...after)).toBeLessThan(HEADERS_TIMEOUT_MS + 3_000);
  });

  it('serves liveness, readiness and gRPC health without a key', async () => {
    for (const path of ['/livez', '/readyz', '/healthz']) {
      const response = await fetch(`${tee.stack.url}${path}`);
      expect([path, response.status]).toEqual([path, 200]);
      expect(await response.json()).toMatchObject({ status: 'ok' });
    }
    const health = createClient(Health, createGrpcTransport({ baseUrl: tee.stack.url }));
    const services = [
      '',
      'assist_tee.v1.EnvironmentService',
      'assist_tee.v1.ExecutionService',
      'assist_tee.v1.SessionService',
      'assist_tee.admin.v1.WarmPoolService',
      'assist_tee.admin.v1.ReaperService',
      'assist_tee.admin.v1.SessionSandboxService',
    ];
    for (const service of services) {
      expect([service, (await health.check({ service })).status]).toEqual([
        service,
        ServingStatus.SERVING,
      ]);
    }
    expect(Object.keys((await health.list({})).statuses).sort()).toEqual(services.sort());
    expect(await codeOf(health.check({ service: 'no.such.Service' }))).toBe('NotFound');
    for await (const { status } of health.watch({ service: '' })) {
      expect(status).toBe(ServingStatus.SERVING);
      break;
    }
  });

  it('serves Prometheus metrics without a key, counting the RPCs it served', async () => {
    const client = await tee.clientOf('metrics-edge');
    await client.environments.listEnvironments({});
    const response = await fetch(`${tee.stack.url}/metrics`);
    expect(response.status).toBe(200);
    const text = await response.text();
    const listed = text
      .split('\n')
      .find((line) =>
        line.startsWith(
          'assist_tee_rpc_requests_total{service="assist_tee.v1.EnvironmentService",method="ListEnvironments",code="ok"}',
        ),
      );
    expect(Number(listed?.split(' ').at(-1))).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^process_resident_memory_bytes \d/m);
  });
});

// The stack on a NATS of the test's own, which it stops: an orchestrator must see the process
// alive (no restart) but not ready.
describe('liveness apart from readiness while NATS is down', () => {
  let nats: PrivateServer;
  let natsDown = false;
  let stack: TestStack;
  let health: Client<typeof Health>;
  beforeAll(async () => {
    nats = await startPrivateNatsServer();
    stack = await startTestStack({ TEE_NATS_URL: nats.url });
    health = createClient(Health, createGrpcTransport({ baseUrl: stack.url }));
  });
  afterAll(async () => {
    if (natsDown) await nats.start();
    await stack?.stop();
    await nats?.destroy();
  });

  const status = async (path: string) => (await fetch(`${stack.url}${path}`)).status;

  it('stays live, turns unready and back, and Watch reports each change', async () => {
    const watching = new AbortController();
    const statuses: ServingStatus[] = [];
    const watch = (async () => {
      for await (const { status } of health.watch({ service: '' }, { signal: watching.signal })) {
        statuses.push(status);
      }
    })().catch(() => {});
    await vi.waitFor(() => expect(statuses).toEqual([ServingStatus.SERVING]));

    await nats.stop();
    natsDown = true;
    await vi.waitFor(async () => expect(await status('/readyz')).toBe(503), { timeout: 20_000 });
    expect(await status('/healthz')).toBe(503);
    expect(await status('/livez')).toBe(200);
    for (const service of ['', 'assist_tee.v1.ExecutionService']) {
      expect((await health.check({ service })).status).toBe(ServingStatus.NOT_SERVING);
    }
    await vi.waitFor(
      () => expect(statuses).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]),
      { timeout: 20_000 },
    );

    await nats.start();
    natsDown = false;
    await vi.waitFor(async () => expect(await status('/readyz')).toBe(200), { timeout: 30_000 });
    await vi.waitFor(
      () =>
        expect(statuses).toEqual([
          ServingStatus.SERVING,
          ServingStatus.NOT_SERVING,
          ServingStatus.SERVING,
        ]),
      { timeout: 20_000 },
    );
    watching.abort();
    await watch;
  });
});
