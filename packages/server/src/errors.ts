import { setTimeout as delay } from 'node:timers/promises';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import type { Logger } from '@assist-tee/logger';

/** A field-level validation error; `field` is the proto field path, e.g. `limits.timeout_ms`. */
export function invalidArgument(field: string, problem: string): ConnectError {
  return new ConnectError(`${field}: ${problem}`, Code.InvalidArgument);
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
