import { type Client, createClient, type ServiceImpl } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { ExecutionEntity, executionMigrations, openDatabase } from '@assist-tee/db';
import { EnvironmentService, ExecutionService } from '@assist-tee/proto';
import { denoRuntime } from '@assist-tee/runtime-deno';
import { type Infrastructure, requireSandboxRuntime, type Service } from '@assist-tee/server';
import type { ExecutionDeps } from './deps.js';
import { execute } from './rpc/execute.js';
import { executeStream } from './rpc/execute-stream.js';
import { getExecution } from './rpc/get-execution.js';
import { listExecutions } from './rpc/list-executions.js';

export interface ExecutionServiceOptions {
  /** How to reach the EnvironmentService; by default over HTTP at config.environmentsUrl. */
  environments?: Client<typeof EnvironmentService>;
}

/** The ExecutionService with its own database schema ("execution"). */
export async function createExecutionService(
  infrastructure: Infrastructure,
  options: ExecutionServiceOptions = {},
): Promise<Service> {
  const { config, bus, sandbox } = infrastructure;
  const logger = infrastructure.logger.child({ subsystem: 'execution' });
  await requireSandboxRuntime(sandbox, config.docker.sandboxRuntime, denoRuntime.image);
  const db = await openDatabase({
    url: config.databaseUrl,
    schema: 'execution',
    entities: [ExecutionEntity],
    migrations: executionMigrations,
    logger,
  });
  const environments =
    options.environments ??
    createClient(
      EnvironmentService,
      createConnectTransport({ baseUrl: config.environmentsUrl, httpVersion: '1.1' }),
    );
  const deps: ExecutionDeps = {
    config,
    logger,
    db,
    bus,
    sandbox,
    runtime: denoRuntime,
    environments,
  };
  const implementation: ServiceImpl<typeof ExecutionService> = {
    execute: execute(deps),
    executeStream: executeStream(deps),
    getExecution: getExecution(deps),
    listExecutions: listExecutions(deps),
  };
  return {
    name: 'execution',
    routes: (router) => router.service(ExecutionService, implementation),
    healthChecks: [{ name: 'postgres:execution', check: () => db.ping() }],
    start: async () => {},
    stop: () => db.close(),
  };
}
