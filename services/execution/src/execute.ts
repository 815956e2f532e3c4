import type { JsonValue } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { ColdStartReasonName } from '@assist-tee/db';
import {
  type Environment,
  EnvironmentStatus,
  EnvironmentStatusSchema,
  type ExecuteRequest,
  type Execution,
} from '@assist-tee/proto';
import { failedPrecondition, invalidArgument, notFound, withinLimits } from '@assist-tee/server';
import type { CoreDeps, ExecutionDeps } from './deps.js';
import { jsonFromValue, toExecutionMessage } from './execution-message.js';
import { resolveLimits } from './limits.js';
import { recordedRun } from './recorded-run.js';
import type { RunWork } from './runner-sandbox.js';
import { launchSandbox, runtimeOf } from './launch.js';
import type { LogLine } from './runner-protocol.js';
import { snippetImports } from './snippet-imports.js';

/** The fields Execute and ExecuteStream share. */
export type ExecuteInput = Pick<
  ExecuteRequest,
  'environmentId' | 'data' | 'env' | 'limits' | 'sessionId' | 'code'
>;

/**
 * Runs one execution end to end: validates, runs the handler or snippet in a fresh sandbox, or
 * in the session's when the call names one (sessions.ts), records the outcome, and publishes
 * execution.started / execution.finished.
 */
export async function execute(
  deps: ExecutionDeps,
  caller: string | undefined,
  input: ExecuteInput,
  onLog?: (line: LogLine) => void,
): Promise<Execution> {
  if (input.sessionId !== '') return deps.sessions.execute(caller, input, onLog);
  return asExecution(deps, caller, input.environmentId, (signal) =>
    executeNow(deps, caller, input, signal, onLog),
  );
}

/**
 * Runs `run` under the caller's and the instance's limits on running executions, as work in
 * flight on the environment: a stopping service refuses it, and waits for it or cuts it short.
 */
export function asExecution<T>(
  deps: CoreDeps,
  caller: string | undefined,
  environmentId: string,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  // The services' key (caller undefined) is not a tenant and has no quota of its own; it
  // counts towards the instance's limit like every tenant.
  return withinLimits(
    [
      ...(caller === undefined ? [] : [() => deps.executionQuota.acquire(caller)]),
      () => deps.runningExecutions.acquire(),
    ],
    () => deps.work.run(run, environmentId),
  );
}

async function executeNow(
  deps: CoreDeps,
  caller: string | undefined,
  input: ExecuteInput,
  signal: AbortSignal,
  onLog?: (line: LogLine) => void,
): Promise<Execution> {
  const startedAt = Date.now();
  for (const warning of deps.warnings) {
    deps.logger.warn({ environmentId: input.environmentId }, warning);
  }
  const limits = resolveLimits(input.limits, deps.config.execution);
  const work = await callWork(deps, input);
  // A warm sandbox was started with the default limits: other limits need a cold one.
  const { defaults } = deps.config.execution;
  const fitsPool =
    limits.memoryMb === defaults.memoryMb && limits.cpuMillicores === defaults.cpuMillicores;
  // Code and permissions never change after setup: the pool's copy of the environment can
  // check the request and start a warm run while the lookup confirms that the environment is
  // still READY. Nothing is recorded before it has, and a failed lookup stops the run and fails
  // the call.
  const lookup = readyEnvironment(deps, caller, input.environmentId);
  const known = fitsPool ? deps.pool.environment(input.environmentId) : undefined;
  const environment = known ?? (await lookup);
  try {
    checkRequest(deps, caller, environment, input);
  } catch (error) {
    await lookup; // a deleted environment is NotFound, whatever the request
    throw error;
  }
  let sandbox = known === undefined ? undefined : deps.pool.takeReady(known.id);
  let coldStartReason: ColdStartReasonName | null = null;
  if (sandbox === undefined) {
    // A cold start (or a sandbox still starting) only for an environment known to be READY.
    await lookup;
    const take = await deps.pool.take(environment, { defaultLimits: fitsPool });
    sandbox = take.sandbox;
    coldStartReason = take.coldStartReason ?? null;
  }
  // A warm sandbox holds its memory already; a cold one is refused at once if running work
  // holds too much of the instance's sandbox memory to fit it (idle warm sandboxes give way).
  const coldMemory =
    sandbox === undefined
      ? await deps.memory.admit(
          limits.memoryMb,
          `an execution with limits.memory_mb ${limits.memoryMb}`,
        )
      : undefined;
  try {
    const { row } = await recordedRun(deps, {
      environment,
      confirmed: lookup,
      startedAt,
      limits,
      warm: sandbox !== undefined,
      coldStartReason,
      sessionId: null,
      signal,
      run: async (executionId, runSignal) => {
        sandbox ??= await launchSandbox(deps, environment, limits, { executionId }, coldMemory!);
        return sandbox.run({
          work,
          env: input.env,
          context: { executionId, environmentId: environment.id, sessionId: '' },
          timeoutMs: limits.timeoutMs,
          maxOutputBytes: limits.maxOutputBytes,
          onLog,
          signal: runSignal,
        });
      },
    });
    return toExecutionMessage(row);
  } finally {
    // Removal, and the start that refills the pool, come after the outcome is written: on two
    // cores they would slow that write down. The pool tracks the removal; shutdown waits for it.
    if (sandbox !== undefined) deps.pool.discard(sandbox);
  }
}

/**
 * What a call runs: its snippet (`code`), or the handler on its `data`; InvalidArgument for
 * both at once, for data that is not JSON, and for an event over the size limit.
 */
export async function callWork(
  deps: Pick<ExecutionDeps, 'config'>,
  input: ExecuteInput,
): Promise<RunWork> {
  const data = eventData(input.data);
  if (input.code !== '' && data !== null) {
    throw invalidArgument('data', 'must be empty when code is set: a snippet takes no event');
  }
  const eventBytes = Buffer.byteLength(JSON.stringify({ data, code: input.code, env: input.env }));
  if (eventBytes > deps.config.execution.maxEventBytes) {
    throw invalidArgument(
      input.code === '' ? 'data' : 'code',
      `the event is ${eventBytes} bytes; the maximum is ${deps.config.execution.maxEventBytes}`,
    );
  }
  if (input.code === '') return { kind: 'handler', data };
  return { kind: 'snippet', code: input.code, imports: await snippetImports(input.code) };
}

/** A Value can arrive without a kind (proto3 allows it on the wire); JSON has no such value. */
function eventData(value: ExecuteInput['data']): JsonValue {
  try {
    return jsonFromValue(value);
  } catch (error) {
    throw invalidArgument('data', `is not a JSON value: ${(error as Error).message}`);
  }
}

/**
 * The runtime exists here, and every env var is allowed and can be set: checked before anything
 * is recorded.
 */
export function checkRequest(
  deps: CoreDeps,
  caller: string | undefined,
  environment: Environment,
  input: ExecuteInput,
): void {
  requireOwner(caller, environment, input.environmentId);
  runtimeOf(deps, environment);
  const allowed = new Set(environment.permissions?.allowEnv ?? []);
  for (const [name, value] of Object.entries(input.env)) {
    const field = `env[${JSON.stringify(name)}]`;
    if (!allowed.has(name)) {
      throw invalidArgument(field, "is not in the environment's permissions.allow_env");
    }
    if (value.includes('\u0000')) {
      throw invalidArgument(field, 'must not contain U+0000: an environment variable cannot');
    }
  }
}

/** Another tenant's environment is one that does not exist, whatever its status. */
function requireOwner(caller: string | undefined, environment: Environment, id: string): void {
  if (caller !== undefined && environment.tenantId !== caller) throw notFound('environment', id);
}

/** Looks the environment up with the services' key: its owner is checked before its status. */
export async function readyEnvironment(
  deps: CoreDeps,
  caller: string | undefined,
  id: string,
): Promise<Environment> {
  if (id === '') throw invalidArgument('environment_id', 'is required');
  let environment: Environment | undefined;
  try {
    environment = (await deps.environments.getEnvironment({ id })).environment;
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.NotFound) {
      throw notFound('environment', id);
    }
    throw error;
  }
  if (environment === undefined || environment.status === EnvironmentStatus.DELETED) {
    throw notFound('environment', id);
  }
  requireOwner(caller, environment, id);
  if (environment.status !== EnvironmentStatus.READY) {
    // The metadata names the status as the JSON form does (ENVIRONMENT_STATUS_FAILED).
    throw failedPrecondition(
      'ENVIRONMENT_NOT_READY',
      `environment ${JSON.stringify(id)} is ${EnvironmentStatus[environment.status]}, not READY`,
      {
        environmentId: id,
        status: EnvironmentStatusSchema.value[environment.status]?.name ?? environment.status,
      },
    );
  }
  return environment;
}
