import { createClient, createRouterTransport } from '@connectrpc/connect';
import { createEnvironmentsService } from '@assist-tee/environments';
import { createExecutionService } from '@assist-tee/execution';
import { admin, EnvironmentService, ExecutionService } from '@assist-tee/proto';
import { createReaperService } from '@assist-tee/reaper';
import {
  bearer,
  errorInterceptor,
  type Infrastructure,
  type Service,
  traceInterceptor,
} from '@assist-tee/server';

/**
 * All three services in one process, on one port. The execution service reaches the
 * EnvironmentService in memory, through the same API it uses across the network.
 */
export async function createAllServices(infrastructure: Infrastructure): Promise<Service[]> {
  // In-memory calls get the same span, error handling and key check as calls over the network,
  // and carry the services' key.
  const inMemory = (service: Service) =>
    createRouterTransport((router) => service.routes(router), {
      router: {
        interceptors: [
          traceInterceptor,
          errorInterceptor(infrastructure.logger),
          infrastructure.authInterceptor,
        ],
      },
      transport: { interceptors: [bearer(infrastructure.config.auth.serviceKey)] },
    });
  const environments = await createEnvironmentsService(infrastructure);
  const environmentsClient = createClient(EnvironmentService, inMemory(environments));
  try {
    const execution = await createExecutionService(infrastructure, {
      environments: environmentsClient,
    });
    const executionTransport = inMemory(execution);
    const reaper = await createReaperService(infrastructure, {
      environments: environmentsClient,
      executions: createClient(ExecutionService, executionTransport),
      sessions: createClient(admin.SessionSandboxService, executionTransport),
    });
    return [environments, execution, reaper];
  } catch (error) {
    await environments.stop();
    throw error;
  }
}
