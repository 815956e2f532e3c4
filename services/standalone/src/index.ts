import { createClient, createRouterTransport } from '@connectrpc/connect';
import { createEnvironmentsService } from '@assist-tee/environments';
import { createExecutionService } from '@assist-tee/execution';
import { EnvironmentService } from '@assist-tee/proto';
import { createReaperService } from '@assist-tee/reaper';
import type { Infrastructure, Service } from '@assist-tee/server';

/**
 * All three services in one process, on one port. The execution service reaches the
 * EnvironmentService in memory, through the same API it uses across the network.
 */
export async function createAllServices(infrastructure: Infrastructure): Promise<Service[]> {
  const environments = await createEnvironmentsService(infrastructure);
  const environmentsClient = createClient(
    EnvironmentService,
    createRouterTransport((router) => environments.routes(router)),
  );
  try {
    const execution = await createExecutionService(infrastructure, {
      environments: environmentsClient,
    });
    return [environments, execution, createReaperService(infrastructure)];
  } catch (error) {
    await environments.stop();
    throw error;
  }
}
