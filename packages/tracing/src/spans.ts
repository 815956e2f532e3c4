import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanKind,
  SpanStatusCode,
  trace,
  type Tracer,
} from '@opentelemetry/api';

export { type Context, type Span, SpanKind } from '@opentelemetry/api';

/**
 * The tracer every part of Assist TEE records with; a no-op until tracing is registered. Asked
 * for each time: a tracer kept from before a registration would stay a no-op.
 */
export function tracer(): Tracer {
  return trace.getTracer('assist-tee');
}

export interface SpanOptions {
  attributes?: Attributes;
  kind?: SpanKind;
  /** The parent; by default the active context's span. */
  parent?: Context;
}

/**
 * Runs `work` inside a new active span and ends it with work's outcome: a thrown error is
 * recorded on the span and marks it failed.
 */
export function inSpan<T>(
  name: string,
  options: SpanOptions,
  work: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  const { attributes, kind } = options;
  return tracer().startActiveSpan(name, { attributes, kind }, parent, async (span) => {
    try {
      return await work(span);
    } catch (error) {
      failSpan(span, error);
      throw error;
    } finally {
      span.end();
    }
  });
}

/** Records the error on the span and marks it failed (the caller ends it). */
export function failSpan(span: Span, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  span.recordException(error instanceof Error ? error : message);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}

/**
 * Runs `work` outside any trace: background work (a warm pool refill) that a call only set
 * off is not part of that call's trace.
 */
export function detached<T>(work: () => T): T {
  return context.with(ROOT_CONTEXT, work);
}

/** `parent` with `span` as its active span. */
export function contextWithSpan(parent: Context, span: Span): Context {
  return trace.setSpan(parent, span);
}

/** Runs `work` with `parent` as the active context. */
export function withContext<T>(parent: Context, work: () => T): T {
  return context.with(parent, work);
}

/** The active context, to carry over to work that runs later (a stream's next message). */
export function activeContext(): Context {
  return context.active();
}

/** Writes the active trace context's headers (`traceparent`, `tracestate`) with `set`. */
export function injectTraceContext(set: (key: string, value: string) => void): void {
  propagation.inject(context.active(), undefined, { set: (_, key, value) => set(key, value) });
}

/**
 * The context of the headers `get` reads (`traceparent`); without them, the active context (a
 * call made in memory, inside the caller's span).
 */
export function extractTraceContext(get: (key: string) => string | undefined): Context {
  return propagation.extract(context.active(), undefined, {
    get: (_, key) => get(key),
    keys: () => ['traceparent', 'tracestate'],
  });
}

/** The active span's W3C `traceparent`, for work that goes out later (an outbox row). */
export function activeTraceparent(): string | undefined {
  let traceparent: string | undefined;
  injectTraceContext((key, value) => {
    if (key === 'traceparent') traceparent = value;
  });
  return traceparent;
}

/** The context a stored `traceparent` names (the root context without one). */
export function traceparentContext(traceparent: string | undefined | null): Context {
  return extractTraceContext((key) =>
    key === 'traceparent' ? (traceparent ?? undefined) : undefined,
  );
}

/** The active span's trace id; undefined outside a recorded span. */
export function activeTraceId(): string | undefined {
  const spanContext = trace.getActiveSpan()?.spanContext();
  return spanContext !== undefined && trace.isSpanContextValid(spanContext)
    ? spanContext.traceId
    : undefined;
}

/** Adds these attributes to the active span, if one is recording. */
export function setActiveSpanAttributes(attributes: Attributes): void {
  trace.getActiveSpan()?.setAttributes(attributes);
}

/** `trace_id` and `span_id` of the active span, for a log line; {} outside one. */
export function traceLogFields(): { trace_id?: string; span_id?: string } {
  const spanContext = trace.getActiveSpan()?.spanContext();
  if (spanContext === undefined || !trace.isSpanContextValid(spanContext)) return {};
  return { trace_id: spanContext.traceId, span_id: spanContext.spanId };
}
