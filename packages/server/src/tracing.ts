import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { codeToString } from '@connectrpc/connect/protocol-connect';
import {
  type Context,
  contextWithSpan,
  extractTraceContext,
  failSpan,
  injectTraceContext,
  type Span,
  SpanKind,
  tracer,
  withContext,
} from '@assist-tee/tracing';

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
    return { ...response, message: tracedStream(context, response.message, span) };
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

/** Each message of the stream is produced inside `context`; the span ends with the stream. */
async function* tracedStream<T>(
  context: Context,
  messages: AsyncIterable<T>,
  span: Span,
): AsyncIterable<T> {
  const iterator = messages[Symbol.asyncIterator]();
  // Neither finished nor failed: the client went away mid-stream.
  let outcome: unknown = new ConnectError('the client went away', Code.Canceled);
  try {
    for (;;) {
      const result = await withContext(context, () => iterator.next());
      if (result.done === true) break;
      yield result.value;
    }
    outcome = undefined;
  } catch (error) {
    outcome = error;
    throw error;
  } finally {
    if (outcome !== undefined) await withContext(context, async () => iterator.return?.());
    endSpan(span, outcome);
  }
}
