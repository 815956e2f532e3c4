import { type Client, createClient, type Interceptor, type Transport } from '@connectrpc/connect';
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from '@connectrpc/connect-node';
import { admin, EnvironmentService, ExecutionService, SessionService } from '@assist-tee/proto';

import { type RetryOptions, retryInterceptor } from './retry.js';

export * from '@assist-tee/proto';
// What a caller needs to read an error: its code, and its details with
// `ConnectError.from(err).findDetails(BadRequestSchema)` (schemas from @assist-tee/proto).
export { Code, ConnectError } from '@connectrpc/connect';
export { type RetryOptions, retryInterceptor } from './retry.js';

export interface AssistTeeClientOptions {
  /** Where the API is served, e.g. http://localhost:8080. */
  baseUrl: string;
  /** Wire protocol; all three are served on the same port. Default "connect". */
  protocol?: 'connect' | 'grpc' | 'grpc-web';
  /** Use the JSON encoding of the Connect protocol instead of binary protobuf. */
  useJson?: boolean;
  /**
   * Connect protocol only: send the calls without side effects (Get*, List*, and the operator
   * API's GetPoolStatus and GetStatus) as HTTP GET requests, which browsers and HTTP caches can handle as reads.
   */
  useHttpGet?: boolean;
  /** Sent as `Authorization: Bearer <key>` with every call. */
  apiKey?: string;
  /**
   * CreateEnvironment, DeleteEnvironment, Execute and ExecuteStream get a fresh UUID as their
   * request_id when it is left empty; they and the calls without side effects are retried on
   * `unavailable` with the same request_id (5 attempts, backoff from 100 ms doubling up to
   * 2 s, with jitter), streams only before their first message. `false` turns retries off.
   */
  retry?: RetryOptions | false;
  interceptors?: Interceptor[];
}

export interface AssistTeeClient {
  environments: Client<typeof EnvironmentService>;
  executions: Client<typeof ExecutionService>;
  /** Sessions: one sandbox kept for a conversation; Execute with session_id runs in it. */
  sessions: Client<typeof SessionService>;
  /**
   * The operator API (proto package assist_tee.admin.v1), on the same port: only the services'
   * key (TEE_SERVICE_KEY) may call it; a tenant's key gets PermissionDenied.
   */
  admin: {
    /** The warm sandboxes of the execution service that answers. */
    pool: Client<typeof admin.WarmPoolService>;
    /** Sweeps now, and the reaper's status. */
    reaper: Client<typeof admin.ReaperService>;
    /** The sandboxes that sessions hold, and the sessions whose instance is gone. */
    sessionSandboxes: Client<typeof admin.SessionSandboxService>;
  };
}

/** Typed clients for every Assist TEE service, sharing one transport. */
export function createAssistTeeClient(options: AssistTeeClientOptions): AssistTeeClient {
  const transport = createTransport(options);
  return {
    environments: createClient(EnvironmentService, transport),
    executions: createClient(ExecutionService, transport),
    sessions: createClient(SessionService, transport),
    admin: {
      pool: createClient(admin.WarmPoolService, transport),
      reaper: createClient(admin.ReaperService, transport),
      sessionSandboxes: createClient(admin.SessionSandboxService, transport),
    },
  };
}

function bearer(apiKey: string): Interceptor {
  return (next) => (request) => {
    request.header.set('authorization', `Bearer ${apiKey}`);
    return next(request);
  };
}

function createTransport(options: AssistTeeClientOptions): Transport {
  const common = {
    baseUrl: options.baseUrl,
    interceptors: [
      // Outermost: each attempt goes through the interceptors below it again.
      ...(options.retry === false ? [] : [retryInterceptor(options.retry)]),
      ...(options.apiKey === undefined ? [] : [bearer(options.apiKey)]),
      ...(options.interceptors ?? []),
    ],
    useBinaryFormat: !(options.useJson ?? false),
  };
  switch (options.protocol ?? 'connect') {
    case 'grpc':
      // gRPC needs HTTP/2; without TLS that is h2c with prior knowledge.
      return createGrpcTransport({ ...common });
    case 'grpc-web':
      return createGrpcWebTransport({ ...common, httpVersion: '1.1' });
    case 'connect':
      return createConnectTransport({
        ...common,
        httpVersion: '1.1',
        useHttpGet: options.useHttpGet ?? false,
      });
  }
}
