import { type Client, createClient, type Interceptor, type Transport } from '@connectrpc/connect';
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from '@connectrpc/connect-node';
import { EnvironmentService, ExecutionService, ReaperService } from '@assist-tee/proto';

export * from '@assist-tee/proto';

export interface AssistTeeClientOptions {
  /** Where the API is served, e.g. http://localhost:8080. */
  baseUrl: string;
  /** Wire protocol; all three are served on the same port. Default "connect". */
  protocol?: 'connect' | 'grpc' | 'grpc-web';
  /** Use the JSON encoding of the Connect protocol instead of binary protobuf. */
  useJson?: boolean;
  /**
   * Connect protocol only: send the calls without side effects (Get*, List*, GetPoolStatus,
   * GetStatus) as HTTP GET requests, which browsers and HTTP caches can handle as reads.
   */
  useHttpGet?: boolean;
  /** Sent as `Authorization: Bearer <key>` with every call. */
  apiKey?: string;
  interceptors?: Interceptor[];
}

export interface AssistTeeClient {
  environments: Client<typeof EnvironmentService>;
  executions: Client<typeof ExecutionService>;
  reaper: Client<typeof ReaperService>;
}

/** Typed clients for every Assist TEE service, sharing one transport. */
export function createAssistTeeClient(options: AssistTeeClientOptions): AssistTeeClient {
  const transport = createTransport(options);
  return {
    environments: createClient(EnvironmentService, transport),
    executions: createClient(ExecutionService, transport),
    reaper: createClient(ReaperService, transport),
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
