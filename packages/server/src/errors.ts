import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import type { Logger } from '@assist-tee/logger';

/** A field-level validation error; `field` is the proto field path, e.g. `limits.timeout_ms`. */
export function invalidArgument(field: string, problem: string): ConnectError {
  return new ConnectError(`${field}: ${problem}`, Code.InvalidArgument);
}

export function notFound(what: string, id: string): ConnectError {
  return new ConnectError(`${what} ${JSON.stringify(id)} not found`, Code.NotFound);
}

/**
 * Lets ConnectErrors through and turns anything else into a generic Internal error, logged
 * here, so no stack or internal detail reaches a caller. Covers streamed responses too.
 */
export function errorInterceptor(logger: Logger): Interceptor {
  const conceal = (error: unknown, procedure: string): ConnectError => {
    if (error instanceof ConnectError) return error;
    logger.error({ err: error, procedure }, 'unhandled error in a handler');
    return new ConnectError('internal error', Code.Internal);
  };
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
            throw conceal(error, procedure);
          }
        })(),
      };
    } catch (error) {
      throw conceal(error, procedure);
    }
  };
}
