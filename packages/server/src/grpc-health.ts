import { setTimeout as delay } from 'node:timers/promises';
import { Code, ConnectError, type ConnectRouter } from '@connectrpc/connect';
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from '@assist-tee/proto';
import { checkHealth, type HealthCheck } from './health.js';

/** What a process's readiness depends on, as a whole and for each service it serves. */
export interface Readiness {
  /** Every check: the answer for the service "" (the whole server). */
  checks: HealthCheck[];
  /** The checks each served service depends on, by its full name (`assist_tee.v1.…`). */
  services: ReadonlyMap<string, HealthCheck[]>;
}

/**
 * gRPC's standard health service (grpc.health.v1.Health), so that gRPC-native probes and load
 * balancers can ask without an API key. Watch checks again every `watchIntervalMs` and sends
 * each change.
 */
export function grpcHealthRoutes(readiness: Readiness, watchIntervalMs = 5_000) {
  const checksOf = (service: string) =>
    service === '' ? readiness.checks : readiness.services.get(service);
  const statusOf = async (checks: HealthCheck[]) =>
    (await checkHealth(checks)).ok ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;

  return (router: ConnectRouter) =>
    router.service(Health, {
      async check({ service }) {
        const checks = checksOf(service);
        if (checks === undefined) {
          throw new ConnectError(`unknown service ${JSON.stringify(service)}`, Code.NotFound);
        }
        return { status: await statusOf(checks) };
      },
      async list() {
        const names = ['', ...readiness.services.keys()];
        const statuses = await Promise.all(
          names.map(
            async (name) => [name, { status: await statusOf(checksOf(name) ?? []) }] as const,
          ),
        );
        return { statuses: Object.fromEntries(statuses) };
      },
      async *watch({ service }, context) {
        const checks = checksOf(service);
        if (checks === undefined) {
          // The services served never change: an unknown one stays unknown until the call ends.
          yield { status: ServingStatus.SERVICE_UNKNOWN };
          await new Promise((resolve) => context.signal.addEventListener('abort', resolve));
          return;
        }
        let last: ServingStatus | undefined;
        while (!context.signal.aborted) {
          const status = await statusOf(checks);
          if (status !== last) yield { status };
          last = status;
          await delay(watchIntervalMs, undefined, { signal: context.signal }).catch(() => {});
        }
      },
    });
}
