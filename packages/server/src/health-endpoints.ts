import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { Logger } from '@assist-tee/logger';
import type { Registry } from 'prom-client';
import { errorInterceptor } from './errors.js';
import { grpcHealthRoutes, type Readiness } from './grpc-health.js';
import { serveHealth, serveLiveness } from './health.js';
import { serveMetrics } from './metrics.js';

type RequestHandler = ReturnType<typeof connectNodeAdapter>;

export interface HealthEndpointsOptions {
  readiness: Readiness;
  /** Served as GET /metrics, in Prometheus' text format. */
  metrics: Registry;
  /** Insecure settings in force, listed by every answer. */
  warnings: readonly string[];
  logger: Logger;
  /** Ends the Watch calls when the process stops. */
  shutdownSignal: AbortSignal;
}

// A health request names at most a service: nothing bigger needs reading.
const MAX_HEALTH_REQUEST_BYTES = 4096;

/**
 * The endpoints open to anyone, without an API key: GET /livez (the process serves), GET
 * /readyz and its older name /healthz (its dependencies answer), GET /metrics (Prometheus),
 * and grpc.health.v1.Health. Anything else is 404.
 */
export function healthEndpoints(options: HealthEndpointsOptions): RequestHandler {
  const { readiness, warnings } = options;
  return connectNodeAdapter({
    routes: grpcHealthRoutes(readiness),
    interceptors: [errorInterceptor(options.logger)],
    readMaxBytes: MAX_HEALTH_REQUEST_BYTES,
    shutdownSignal: options.shutdownSignal,
    fallback: (request, response) => {
      const path = request.url?.split('?')[0];
      if (request.method === 'GET' && path === '/livez') {
        serveLiveness(response, warnings);
      } else if (request.method === 'GET' && (path === '/readyz' || path === '/healthz')) {
        void serveHealth(readiness.checks, response, warnings);
      } else if (request.method === 'GET' && path === '/metrics') {
        void serveMetrics(options.metrics, response);
      } else {
        response.writeHead(404, { 'content-type': 'text/plain' });
        response.end('not found\n');
      }
    },
  });
}
