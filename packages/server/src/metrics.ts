import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { codeToString } from '@connectrpc/connect/protocol-connect';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import { ErrorInfoSchema } from '@assist-tee/proto';
import type { HealthResponse } from './health.js';
import { watchEnd } from './stream-end.js';

/** Seconds: from a fast unary call to a handler that runs for its full 300 s. */
const RPC_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * One process's Prometheus metrics: a registry of its own (no module-level default), Node's
 * process metrics, and those of every RPC it serves. Services add theirs to `registry`. Labels
 * are bounded: services, methods and codes, never an id.
 */
export interface Metrics {
  readonly registry: Registry;
  /** Counts each RPC by service, method and Connect code, and observes its duration. */
  readonly rpcInterceptor: Interceptor;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const labelNames = ['service', 'method', 'code'] as const;
  const requests = new Counter({
    name: 'assist_tee_rpc_requests_total',
    help: 'RPCs served, by service, method and Connect code (ok for success).',
    labelNames,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'assist_tee_rpc_duration_seconds',
    help: 'Time from an RPC arriving to its last response message, by service, method and code.',
    labelNames,
    buckets: RPC_BUCKETS,
    registers: [registry],
  });

  const refusals = new Counter({
    name: 'assist_tee_rpc_refusals_total',
    help: 'RPCs refused with resource_exhausted, by service, method and reason (a quota or an admission limit).',
    labelNames: ['service', 'method', 'reason'],
    registers: [registry],
  });

  const rpcInterceptor: Interceptor = (next) => async (request) => {
    const started = performance.now();
    const service = request.service.typeName;
    const method = request.method.name;
    const record = (error?: unknown) => {
      const connectError = error === undefined ? undefined : ConnectError.from(error);
      const code = connectError === undefined ? 'ok' : codeToString(connectError.code);
      requests.inc({ service, method, code });
      duration.observe({ service, method, code }, (performance.now() - started) / 1000);
      if (connectError?.code === Code.ResourceExhausted) {
        const reason = connectError.findDetails(ErrorInfoSchema)[0]?.reason || 'UNKNOWN';
        refusals.inc({ service, method, reason });
      }
    };
    try {
      const response = await next(request);
      if (!response.stream) {
        record();
        return response;
      }
      // A stream is done when its last message is out, or when it fails.
      return { ...response, message: watchEnd(response.message, record) };
    } catch (error) {
      record(error);
      throw error;
    }
  };
  return { registry, rpcInterceptor };
}

/** Answers a scrape: the registry in Prometheus' text format. */
export async function serveMetrics(registry: Registry, response: HealthResponse): Promise<void> {
  try {
    const text = await registry.metrics();
    response.writeHead(200, { 'content-type': registry.contentType });
    response.end(text);
  } catch {
    response.writeHead(500, { 'content-type': 'text/plain' });
    response.end('collecting the metrics failed\n');
  }
}
