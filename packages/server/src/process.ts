import {
  Code,
  ConnectError,
  createConnectRouter,
  type ConnectRouter,
  type Interceptor,
} from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { loadConfig, type Config } from '@assist-tee/config';
import { connectEventBus, type EventBus } from '@assist-tee/events';
import { createLogger, type Logger } from '@assist-tee/logger';
import { startTracing } from '@assist-tee/tracing';
import { createDockerClient, SandboxDriver } from '@assist-tee/sandbox';
import { type ApiKeys, openApiKeys } from './api-keys.js';
import { authGate, authInterceptor } from './auth.js';
import { withCors } from './cors.js';
import { errorInterceptor } from './errors.js';
import type { HealthCheck } from './health.js';
import { healthEndpoints } from './health-endpoints.js';
import { createMetrics, type Metrics } from './metrics.js';
import { SandboxMemory } from './sandbox-memory.js';
import { startHttpServer } from './http-server.js';
import { traceInterceptor } from './tracing.js';

/** What a process shares between the services it runs. */
export interface Infrastructure {
  config: Config;
  logger: Logger;
  bus: EventBus;
  sandbox: SandboxDriver;
  apiKeys: ApiKeys;
  /** Checks every call's API key; services running in one process call each other through it. */
  authInterceptor: Interceptor;
  /** Memory of every sandbox this process runs (TEE_SANDBOX_MEMORY_MB), shared by its services. */
  sandboxMemory: SandboxMemory;
  /** The process's Prometheus metrics, served as GET /metrics; services add theirs. */
  metrics: Metrics;
}

/** One Connect service and its background work, as a process runs it. */
export interface Service {
  readonly name: string;
  routes(router: ConnectRouter): void;
  /** Dependencies of this service beyond the shared ones (NATS, Docker). */
  readonly healthChecks: HealthCheck[];
  /** Insecure settings in force, shown by /livez, /readyz and /healthz. */
  readonly warnings?: readonly string[];
  /** Starts background work, such as event consumers. */
  start(): Promise<void>;
  /**
   * Refuses new work, lets the work in hand finish for `graceMs`, then cuts it short; resolves
   * once every piece has recorded its outcome. Called before `stop`.
   */
  drain?(graceMs: number): Promise<void>;
  /** Stops background work and closes what the service opened. */
  stop(): Promise<void>;
}

export interface RunningProcess {
  readonly port: number;
  readonly url: string;
  readonly infrastructure: Infrastructure;
  /**
   * Stops taking requests and work, lets what is in hand finish for config.shutdownGraceMs (then
   * cuts it short), answers the open requests, and stops the services.
   */
  stop(): Promise<void>;
}

export interface StartProcessOptions {
  name: string;
  config: Config;
  logger?: Logger;
  createServices(infrastructure: Infrastructure): Promise<Service[]>;
}

/** Logged at start, with every execution, and shown by /readyz while TEE_ALLOW_NO_AUTH is set. */
export const NO_AUTH_WARNING =
  'INSECURE: calls without an API key are accepted, as the tenant "dev"; TEE_ALLOW_NO_AUTH is for development only';

// After the work is drained: time for the last responses to reach their clients.
const RESPONSE_FLUSH_MS = 5_000;

export async function startProcess(options: StartProcessOptions): Promise<RunningProcess> {
  const { config } = options;
  const logger = options.logger ?? createLogger({ level: config.logLevel }, { name: options.name });
  const cleanups: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (error) {
        logger.error({ err: error }, 'error while stopping');
      }
    }
  };

  try {
    const metrics = createMetrics();
    const bus = await connectEventBus({
      servers: config.nats.servers,
      subjectPrefix: config.nats.subjectPrefix,
      name: `${options.name}-${config.instanceId}`,
      logger: logger.child({ subsystem: 'events' }),
      registry: metrics.registry,
    });
    cleanups.push(() => bus.close());
    const sandbox = new SandboxDriver({
      docker: createDockerClient({ socketPath: config.docker.socketPath }),
      logger: logger.child({ subsystem: 'sandbox' }),
      runtime: config.docker.sandboxRuntime,
      networkRuntime: config.docker.sandboxNetworkRuntime,
      deployment: config.deployment,
      requireGvisor: !config.docker.allowInsecureRuntime,
    });
    const apiKeys = await openApiKeys({
      databaseUrl: config.databaseUrl,
      serviceKey: config.auth.serviceKey,
      logger: logger.child({ subsystem: 'auth' }),
    });
    cleanups.push(() => apiKeys.close());
    const auth = authInterceptor(apiKeys, config.auth.allowAnonymous);
    const infrastructure: Infrastructure = {
      config,
      logger,
      bus,
      sandbox,
      apiKeys,
      authInterceptor: auth,
      sandboxMemory: new SandboxMemory(config.capacity.sandboxMemoryMb),
      metrics,
    };

    const services = await options.createServices(infrastructure);
    for (const service of services) {
      cleanups.push(() => service.stop());
      await service.start();
    }

    const sharedChecks: HealthCheck[] = [
      { name: 'nats', check: () => bus.ping() },
      { name: 'docker', check: () => sandbox.ping() },
    ];
    const readiness = {
      checks: [...sharedChecks, ...services.flatMap((service) => service.healthChecks)],
      services: new Map(
        services.flatMap((service) =>
          serviceNames(service).map((name) => [name, [...sharedChecks, ...service.healthChecks]]),
        ),
      ),
    };
    if (config.auth.allowAnonymous) logger.warn(NO_AUTH_WARNING);
    const warnings = [
      ...new Set([
        ...services.flatMap((service) => service.warnings ?? []),
        ...(config.auth.allowAnonymous ? [NO_AUTH_WARNING] : []),
      ]),
    ];
    // Aborted once the work in hand is drained: handlers still waiting (a Watch) end.
    const shutdown = new AbortController();
    const handler = connectNodeAdapter({
      routes: (router) => services.forEach((service) => service.routes(router)),
      // The key is checked before the body is read; the interceptor then finds the caller set.
      requestGate: authGate(apiKeys, config.auth.allowAnonymous, logger),
      // The span holds everything else; the metrics see the code the caller gets.
      interceptors: [
        traceInterceptor,
        infrastructure.metrics.rpcInterceptor,
        errorInterceptor(logger),
        auth,
      ],
      readMaxBytes: config.http.maxRequestBytes,
      maxTimeoutMs: config.http.maxCallTimeoutMs,
      shutdownSignal: shutdown.signal,
      fallback: healthEndpoints({
        readiness,
        metrics: infrastructure.metrics.registry,
        warnings,
        logger,
        shutdownSignal: shutdown.signal,
      }),
    });
    const server = await startHttpServer({
      host: config.http.host,
      port: config.http.port,
      handler: withCors(config.http.corsOrigins, handler),
      timeouts: {
        headersMs: config.http.headersTimeoutMs,
        requestMs: config.http.requestTimeoutMs,
        idleMs: config.http.idleTimeoutMs,
      },
    });
    cleanups.push(() => server.close(RESPONSE_FLUSH_MS));
    const url = `http://${config.http.host}:${server.port}`;
    logger.info({ url, services: services.map((service) => service.name) }, 'serving');
    let stopping: Promise<void> | undefined;
    const stop = async () => {
      server.stopListening();
      const drains = await Promise.allSettled(
        services.map(async (service) => service.drain?.(config.shutdownGraceMs)),
      );
      for (const drain of drains) {
        if (drain.status === 'rejected') logger.error({ err: drain.reason }, 'draining failed');
      }
      shutdown.abort(new ConnectError('the server is shutting down', Code.Unavailable));
      await stopAll();
    };
    return { port: server.port, url, infrastructure, stop: () => (stopping ??= stop()) };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** The full names of the Connect services `service` serves, e.g. `assist_tee.v1.ExecutionService`. */
function serviceNames(service: Service): string[] {
  const router = createConnectRouter();
  service.routes(router);
  return [...new Set(router.handlers.map((handler) => handler.service.typeName))];
}

/**
 * The whole life of a service process: configuration from the environment, traces when the
 * OTEL_* variables configure an exporter, start, and a graceful stop on SIGTERM or SIGINT. A
 * second signal exits at once.
 */
export async function runMain(
  name: string,
  createServices: StartProcessOptions['createServices'],
): Promise<void> {
  const config = loadConfig();
  // The standalone process is `assist-tee`; a service running apart `assist-tee-<service>`.
  const tracing = startTracing(name === 'assist-tee' ? name : `assist-tee-${name}`);
  const logger = createLogger({ level: config.logLevel }, { name });
  if (tracing !== undefined) logger.info('exporting traces over OTLP');
  const running = await startProcess({ name, config, logger, createServices });
  const shutdown = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (shutdown.signal.aborted) process.exit(1);
    logger.info({ signal }, 'stopping');
    shutdown.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await new Promise((resolve) => shutdown.signal.addEventListener('abort', resolve));
  await running.stop();
  // The last spans go out before the process ends.
  await tracing?.shutdown().catch((error: unknown) => {
    logger.warn({ err: error }, 'exporting the last traces failed');
  });
  logger.info('stopped');
}
