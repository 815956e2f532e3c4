import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, createRouterTransport } from '@connectrpc/connect';
import { createLogger } from '@assist-tee/logger';
import {
  EnvironmentSchema,
  EnvironmentService,
  ExecuteStreamResponseSchema,
  ExecutionService,
} from '@assist-tee/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createMetrics,
  quotaExceeded,
  healthEndpoints,
  type HttpServer,
  type Metrics,
  startHttpServer,
} from '../src/index.js';

/** The value of one sample of the registry's text, 0 when it is not there. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const wanted = Object.entries(labels)
    .map(([key, value]) => `${key}="${value}"`)
    .join(',');
  const line = text.split('\n').find((entry) => entry.startsWith(`${name}{${wanted}}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

// A real Connect router in memory, with the interceptor as a process mounts it.
describe('RPC metrics', () => {
  let metrics: Metrics;
  let server: HttpServer;

  beforeAll(async () => {
    metrics = createMetrics();
    server = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      timeouts: { headersMs: 5_000, requestMs: 5_000, idleMs: 5_000 },
      handler: healthEndpoints({
        readiness: { checks: [], services: new Map() },
        metrics: metrics.registry,
        warnings: [],
        logger: createLogger({ level: 'silent' }),
        shutdownSignal: new AbortController().signal,
      }),
    });
  });
  afterAll(async () => {
    await server?.close(1_000);
  });

  it('counts each call by service, method and code, and times it; streams at their end', async () => {
    const transport = createRouterTransport(
      ({ service }) => {
        service(EnvironmentService, {
          getEnvironment: ({ id }) => {
            if (id === 'missing') throw new ConnectError('no such environment', Code.NotFound);
            if (id === 'quota') {
              throw quotaExceeded('TENANT_QUOTA_ENVIRONMENTS', 'at the quota', { limit: 1 });
            }
            return { environment: create(EnvironmentSchema, { id }) };
          },
        });
        service(ExecutionService, {
          async *executeStream({ environmentId }) {
            yield create(ExecuteStreamResponseSchema, {});
            // The handler's work between its messages.
            await new Promise((resolve) => setImmediate(resolve));
            if (environmentId === 'fails') {
              throw new ConnectError('over the quota', Code.ResourceExhausted);
            }
            yield create(ExecuteStreamResponseSchema, {});
          },
        });
      },
      { router: { interceptors: [metrics.rpcInterceptor] } },
    );
    const environments = createClient(EnvironmentService, transport);
    const executions = createClient(ExecutionService, transport);
    await environments.getEnvironment({ id: 'a' });
    await environments.getEnvironment({ id: 'b' });
    await expect(environments.getEnvironment({ id: 'missing' })).rejects.toThrow(/no such/);
    await expect(environments.getEnvironment({ id: 'quota' })).rejects.toThrow(/at the quota/);
    const received: unknown[] = [];
    for await (const message of executions.executeStream({ environmentId: 'ok' })) {
      received.push(message);
    }
    const failing = async () => {
      for await (const message of executions.executeStream({ environmentId: 'fails' })) {
        received.push(message);
      }
    };
    await expect(failing()).rejects.toThrow(/over the quota/);
    expect(received).toHaveLength(3);

    const text = await metrics.registry.metrics();
    const get = { service: 'assist_tee.v1.EnvironmentService', method: 'GetEnvironment' };
    const stream = { service: 'assist_tee.v1.ExecutionService', method: 'ExecuteStream' };
    expect(sample(text, 'assist_tee_rpc_requests_total', { ...get, code: 'ok' })).toBe(2);
    expect(sample(text, 'assist_tee_rpc_requests_total', { ...get, code: 'not_found' })).toBe(1);
    expect(sample(text, 'assist_tee_rpc_requests_total', { ...stream, code: 'ok' })).toBe(1);
    expect(
      sample(text, 'assist_tee_rpc_requests_total', { ...stream, code: 'resource_exhausted' }),
    ).toBe(1);
    expect(sample(text, 'assist_tee_rpc_duration_seconds_count', { ...get, code: 'ok' })).toBe(2);
    // Refusals by the reason their ErrorInfo gives, UNKNOWN without one.
    const refusals = (labels: Record<string, string>) =>
      sample(text, 'assist_tee_rpc_refusals_total', labels);
    expect(refusals({ ...get, reason: 'TENANT_QUOTA_ENVIRONMENTS' })).toBe(1);
    expect(refusals({ ...stream, reason: 'UNKNOWN' })).toBe(1);
    expect(
      sample(text, 'assist_tee_rpc_duration_seconds_bucket', { le: '300', ...get, code: 'ok' }),
    ).toBe(2);
  });

  it('serves the registry as GET /metrics, with the process metrics, in Prometheus text', async () => {
    const response = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text).toContain('# TYPE assist_tee_rpc_requests_total counter');
    expect(text).toContain('# TYPE assist_tee_rpc_duration_seconds histogram');
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(
      (await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: 'POST' })).status,
    ).toBe(404);
  });
});
