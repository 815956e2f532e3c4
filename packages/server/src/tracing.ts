import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { codeToString } from '@connectrpc/connect/protocol-connect';
import {
  contextWithSpan,
  extractTraceContext,
  failSpan,
  injectTraceContext,
  type Span,
  SpanKind,
  tracer,
  withContext,
} from '@assist-tee/tracing';
import { watchEnd } from './stream-end.js';

/**
 * A server span per RPC, named `service/method`, child of the caller's `traceparent` when it
 * sends one. The handler runs inside it (a stream's handler too, message by message), so its
 * database, sandbox and event spans and its log lines belong to the call's trace.
 */
export const traceInterceptor: Interceptor = (next) => async (request) => {
  const parent = extractTraceContext((key) => request.header.get(key) ?? undefined);
  const service = request.service.typeName;
  const method = request.method.name;
  const span = tracer().startSpan(
    `${service}/${method}`,
    {
      kind: SpanKind.SERVER,
      attributes: { 'rpc.system': 'connect_rpc', 'rpc.service': service, 'rpc.method': method },
    },
    parent,
  );
  const context = contextWithSpan(parent, span);
  try {
    const response = await withContext(context, () => next(request));
    if (!response.stream) {
      endSpan(span);
      return response;
    }
    // Each message of a stream is produced inside the span; it ends with the stream.
    const message = watchEnd(
      response.message,
      (error) => endSpan(span, error),
      (pull) => withContext(context, pull),
    );
    return { ...response, message };
  } catch (error) {
    endSpan(span, error);
    throw error;
  }
};

/** Sends the active trace context (`traceparent`) with each call to another service. */
export const propagateTraceInterceptor: Interceptor = (next) => (request) => {
  injectTraceContext((key, value) => request.header.set(key, value));
  return next(request);
};

function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) {
    const code = ConnectError.from(error).code;
    span.setAttribute('rpc.connect_rpc.error_code', codeToString(code));
    // A refusal or a bad request is the caller's; only a server-side failure marks the span.
    if (SERVER_FAULTS.has(code)) failSpan(span, error);
  }
  span.end();
}

const SERVER_FAULTS = new Set([
  Code.Unknown,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
  Code.DeadlineExceeded,
]);
