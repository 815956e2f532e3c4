import type { DescService } from '@bufbuild/protobuf';
import {
  Code,
  ConnectError,
  createContextKey,
  type HandlerContext,
  type Interceptor,
  type Transport,
} from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { propagateTraceInterceptor } from './tracing.js';
import type { Config } from '@assist-tee/config';
import type { Logger } from '@assist-tee/logger';
import type { ApiKeys, Principal } from './api-keys.js';
import { concealError, permissionDenied } from './errors.js';

/** The tenant of calls without a key when TEE_ALLOW_NO_AUTH is set (development only). */
export const ANONYMOUS_TENANT = 'dev';

const PRINCIPAL = createContextKey<Principal | undefined>(undefined, {
  description: 'the caller, from its API key',
});

/**
 * Every call needs `Authorization: Bearer <key>`: a tenant's key, or the services' shared key.
 * Missing or unknown → Unauthenticated. With `allowAnonymous` a call without the header acts
 * as the tenant "dev".
 */
async function authenticate(
  keys: ApiKeys,
  allowAnonymous: boolean,
  header: string | null,
): Promise<Principal> {
  if (header === null && allowAnonymous) return { kind: 'tenant', tenantId: ANONYMOUS_TENANT };
  if (header === null) {
    throw new ConnectError(
      'an API key is required: send "Authorization: Bearer <key>"',
      Code.Unauthenticated,
    );
  }
  const key = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
  const principal = key === undefined ? undefined : await keys.verify(key);
  if (principal === undefined) {
    throw new ConnectError('the API key is not valid, or was revoked', Code.Unauthenticated);
  }
  return principal;
}

/** The operator API's proto packages (assist_tee.admin.v1, …): the services' key only. */
const OPERATOR_PACKAGE = /^assist_tee\.admin\./;

/**
 * Refuses a tenant's key on any service of the operator API, whatever the method: new operator
 * RPCs are covered by the package they are declared in.
 */
function authorize(principal: Principal, service: DescService): Principal {
  if (principal.kind === 'tenant' && OPERATOR_PACKAGE.test(service.typeName)) {
    throw permissionDenied(
      'OPERATOR_ONLY',
      `${service.typeName} is for operators: call it with the services' key (TEE_SERVICE_KEY)`,
      { service: service.typeName },
    );
  }
  return principal;
}

/**
 * Checks the key of a call to the HTTP server once its headers are in, before its body is read:
 * a caller without a valid key cannot make the process read, decompress or parse anything.
 * Connect's `requestGate`; the refusal takes the form of each protocol's error.
 */
export function authGate(
  keys: ApiKeys,
  allowAnonymous: boolean,
  logger: Logger,
): (context: HandlerContext) => Promise<void> {
  return async (context) => {
    const header = context.requestHeader.get('authorization');
    try {
      const principal = await authenticate(keys, allowAnonymous, header);
      context.values.set(PRINCIPAL, authorize(principal, context.service));
    } catch (error) {
      // The key store (Postgres) may be down: that is Unavailable, as for any handler.
      throw concealError(logger, error, `${context.service.typeName}/${context.method.name}`);
    }
  };
}

/**
 * The same check for calls that reach the services in memory (one process running several).
 * Calls that came through `authGate` already carry their caller.
 */
export function authInterceptor(keys: ApiKeys, allowAnonymous: boolean): Interceptor {
  return (next) => async (request) => {
    if (request.contextValues.get(PRINCIPAL) === undefined) {
      const header = request.header.get('authorization');
      const principal = await authenticate(keys, allowAnonymous, header);
      request.contextValues.set(PRINCIPAL, authorize(principal, request.service));
    }
    return next(request);
  };
}

/** Sends `key` with every call a client makes (the services' calls to each other). */
export function bearer(key: string): Interceptor {
  return (next) => (request) => {
    request.header.set('authorization', `Bearer ${key}`);
    return next(request);
  };
}

function principalOf(context: HandlerContext): Principal {
  const principal = context.values.get(PRINCIPAL);
  // The interceptor runs before every handler; a route without it is a wiring bug.
  if (principal === undefined) throw new ConnectError('no caller', Code.Internal);
  return principal;
}

/** The calling tenant, or undefined for the services' key, which sees every tenant. */
export function callerTenant(context: HandlerContext): string | undefined {
  const principal = principalOf(context);
  return principal.kind === 'tenant' ? principal.tenantId : undefined;
}

/** The calling tenant; the services' key owns nothing, so it is refused. */
export function requireTenant(context: HandlerContext): string {
  const tenantId = callerTenant(context);
  if (tenantId === undefined) {
    throw permissionDenied('TENANT_KEY_REQUIRED', 'this call needs a tenant’s API key');
  }
  return tenantId;
}

/** A transport to another service running apart, calling it with the services' shared key. */
export function serviceTransport(config: Config, baseUrl: string): Transport {
  if (!config.auth.serviceKeySet) {
    throw new Error(
      `TEE_SERVICE_KEY must be set, the same on every service, when the services run apart (to call ${baseUrl})`,
    );
  }
  return createConnectTransport({
    baseUrl,
    httpVersion: '1.1',
    interceptors: [propagateTraceInterceptor, bearer(config.auth.serviceKey)],
  });
}
