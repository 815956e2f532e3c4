import { setTimeout as delay } from 'node:timers/promises';
import { durationFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from '@assist-tee/proto';
import type { Logger } from '@assist-tee/logger';

/**
 * A field-level validation error; `field` is the proto field path, e.g. `limits.timeout_ms`.
 * Besides the message it carries a google.rpc.BadRequest naming the field.
 */
export function invalidArgument(field: string, problem: string): ConnectError {
  return new ConnectError(`${field}: ${problem}`, Code.InvalidArgument, undefined, [
    { desc: BadRequestSchema, value: { fieldViolations: [{ field, description: problem }] } },
  ]);
}

/** The domain of every google.rpc.ErrorInfo this API sends; reasons are unique within it. */
export const ERROR_DOMAIN = 'assist-tee.dev';

/** The stable reasons of ErrorInfo details: clients match on these, so never rename one. */
export type ErrorReason =
  | 'TENANT_QUOTA_ENVIRONMENTS'
  | 'TENANT_QUOTA_CONCURRENT_EXECUTIONS'
  | 'TENANT_QUOTA_CONCURRENT_SETUPS'
  | 'TENANT_QUOTA_OPEN_SESSIONS'
  | 'SESSION_QUEUE_FULL'
  | 'SESSION_ENDED'
  | 'SESSION_ELSEWHERE'
  | 'SESSION_NOT_STARTED'
  | 'INSTANCE_BUSY'
  | 'ENVIRONMENT_NOT_READY'
  | 'RUNTIME_UNAVAILABLE'
  | 'TENANT_KEY_REQUIRED'
  | 'OPERATOR_ONLY'
  | 'REAPER_ONLY_REASON';

/** ErrorInfo metadata: lowerCamelCase keys, units in the key (`limitMb`), values as strings. */
export type ErrorMetadata = Record<string, string | number>;

/**
 * What a refusal that clears by itself (running work finishes) suggests waiting before a retry,
 * as google.rpc.RetryInfo: about one short execution. Clients back off from there.
 */
export const ADMISSION_RETRY_DELAY_MS = 1_000;

function withReason(
  code: Code,
  reason: ErrorReason,
  message: string,
  metadata: ErrorMetadata,
  retryDelayMs?: number,
): ConnectError {
  const info = {
    reason,
    domain: ERROR_DOMAIN,
    metadata: Object.fromEntries(
      Object.entries(metadata).map(([key, value]) => [key, String(value)]),
    ),
  };
  return new ConnectError(message, code, undefined, [
    { desc: ErrorInfoSchema, value: info },
    ...(retryDelayMs === undefined
      ? []
      : [{ desc: RetryInfoSchema, value: { retryDelay: durationFromMs(retryDelayMs) } }]),
  ]);
}

/**
 * ResourceExhausted: a quota or limit is reached. With `retryDelayMs` (the refusal clears once
 * running work finishes) it also carries a google.rpc.RetryInfo.
 */
export function quotaExceeded(
  reason: ErrorReason,
  message: string,
  metadata: ErrorMetadata,
  retryDelayMs?: number,
): ConnectError {
  return withReason(Code.ResourceExhausted, reason, message, metadata, retryDelayMs);
}

/** FailedPrecondition: the system is not in the state the call needs (retrying won't help). */
export function failedPrecondition(
  reason: ErrorReason,
  message: string,
  metadata: ErrorMetadata,
): ConnectError {
  return withReason(Code.FailedPrecondition, reason, message, metadata);
}

/** PermissionDenied: the caller is known, but may not make this call (or this request). */
export function permissionDenied(
  reason: ErrorReason,
  message: string,
  metadata: ErrorMetadata = {},
): ConnectError {
  return withReason(Code.PermissionDenied, reason, message, metadata);
}

export function notFound(what: string, id: string): ConnectError {
  return new ConnectError(`${what} ${JSON.stringify(id)} not found`, Code.NotFound);
}

// Node's codes for a peer that cannot be reached, and Postgres's SQLSTATEs for a lost
// connection (class 08) or a server shutting down or starting (57P01-57P03).
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT']);
const POSTGRES_UNAVAILABLE = /^(08|57P0[123])/;

/** Whether an error (or its cause) means a backing service (Postgres, Docker) is not there now. */
export function isUnreachable(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    if (current instanceof AggregateError && current.errors.some(isUnreachable)) return true;
    const { code } = current as { code?: unknown };
    if (
      typeof code === 'string' &&
      (UNREACHABLE_CODES.has(code) || POSTGRES_UNAVAILABLE.test(code))
    ) {
      return true;
    }
    // node-postgres, when the server closes a connection under a query.
    if (current.message.startsWith('Connection terminated')) return true;
  }
  return false;
}

/** Runs `attempt` again while it fails because a backing service is unreachable, up to `timeoutMs`. */
export async function retryWhileUnreachable<T>(
  attempt: () => Promise<T>,
  timeoutMs: number,
  delayMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!isUnreachable(error) || Date.now() + delayMs > deadline) throw error;
      await delay(delayMs);
    }
  }
}

/**
 * Lets a ConnectError through; a backing service that cannot be reached becomes Unavailable
 * (callers retry), anything else a generic Internal error. Either is logged here, so no stack
 * or internal detail reaches a caller.
 */
export function concealError(logger: Logger, error: unknown, procedure: string): ConnectError {
  if (error instanceof ConnectError) return error;
  if (isUnreachable(error)) {
    logger.warn({ err: error, procedure }, 'a backing service is unreachable');
    return new ConnectError('a backing service is unavailable; try again', Code.Unavailable);
  }
  logger.error({ err: error, procedure }, 'unhandled error in a handler');
  return new ConnectError('internal error', Code.Internal);
}

/** concealError for every handler, streamed responses included. */
export function errorInterceptor(logger: Logger): Interceptor {
  return (next) => async (request) => {
    const procedure = `${request.service.typeName}/${request.method.name}`;
    try {
      const response = await next(request);
      if (!response.stream) return response;
      const messages = response.message;
      return {
        ...response,
        message: (async function* () {
          try {
            yield* messages;
          } catch (error) {
            throw concealError(logger, error, procedure);
          }
        })(),
      };
    } catch (error) {
      throw concealError(logger, error, procedure);
    }
  };
}
