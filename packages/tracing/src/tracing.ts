import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

/** A registered tracer provider; shutdown() exports what is buffered and unregisters it. */
export interface Tracing {
  shutdown(): Promise<void>;
}

type Env = Record<string, string | undefined>;

/**
 * Whether the standard OpenTelemetry variables ask for traces: an OTLP endpoint is set
 * (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), and neither
 * OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none turns them off.
 */
export function tracingConfigured(env: Env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === 'none') return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT);
}

/**
 * Exports this process's spans over OTLP (http/protobuf) when the environment configures an
 * endpoint; otherwise registers nothing, and the OpenTelemetry API stays a no-op (no context
 * is kept, no span recorded). The exporter reads its endpoint, headers and certificates from
 * the same variables.
 */
export function startTracing(serviceName: string, env: Env = process.env): Tracing | undefined {
  if (!tracingConfigured(env)) return undefined;
  const processor = new BatchSpanProcessor({ exporter: new OTLPTraceExporter() });
  return registerTracing(serviceName, [processor], samplerFrom(env));
}

/**
 * Registers a tracer provider with these processors as the process's global one, with
 * AsyncLocalStorage context and W3C trace context (`traceparent`) propagation. startTracing
 * uses it; so do tests, with an in-memory exporter.
 */
export function registerTracing(
  serviceName: string,
  spanProcessors: SpanProcessor[],
  sampler: Sampler = new ParentBasedSampler({ root: new AlwaysOnSampler() }),
): Tracing {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the process's own name.
  const resource = resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }).merge(
    detectResources({ detectors: [envDetector] }),
  );
  const provider = new TracerProvider({ resource, sampler, spanProcessors });
  trace.setGlobalTracerProvider(provider);
  return {
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
}

/**
 * OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (the SDK no longer reads them itself): a
 * ratio samples that share of new traces; a call that arrives sampled stays sampled.
 */
function samplerFrom(env: Env): Sampler {
  const name = env.OTEL_TRACES_SAMPLER?.trim().toLowerCase() ?? 'parentbased_always_on';
  const ratio = Number(env.OTEL_TRACES_SAMPLER_ARG ?? '1');
  let root: Sampler = new AlwaysOnSampler();
  if (name.endsWith('always_off')) root = new AlwaysOffSampler();
  if (name.endsWith('traceidratio') && Number.isFinite(ratio)) {
    root = new TraceIdRatioBasedSampler(Math.min(Math.max(ratio, 0), 1));
  }
  return name.startsWith('parentbased') ? new ParentBasedSampler({ root }) : root;
}
